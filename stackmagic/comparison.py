"""Runs side by side: the parameters that differ, those that do not folded away, and metrics.

Comparing runs is asking what changed and what it did: so the parameters every run
shares are one folded line, not rows to read past.
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import StackmagicError
from .output import Output, Table
from .run_view import run_metrics, short_value
from .stores.metadata import RunRecord

#: A cell of a run that has no such parameter or metric.
ABSENT = "-"


@dataclass(repr=False)
class Comparison(Output):
    """``pipeline compare``: a table whose columns are the runs, plus, in a notebook, a chart."""

    table: Table
    same_parameters: dict[str, Any]
    data: dict[str, Any]
    #: the metric the chart shows; None when the runs logged none
    metric: str | None

    @classmethod
    def of(cls, records: Sequence[RunRecord], *, metric: str | None = None) -> Comparison:
        """Compare the runs in the order given; ``metric`` is the one to chart (default: the first)."""
        names = _in_order(name for record in records for name in record.parameters)
        differing = [
            name
            for name in names
            if len({_as_key(record.parameters, name) for record in records}) > 1
        ]
        same = {name: records[0].parameters[name] for name in names if name not in differing}
        metrics = [run_metrics(record) for record in records]
        metric_names = _in_order(name for logged in metrics for name in logged)
        if metric is not None and metric not in metric_names:
            raise StackmagicError(
                f"none of these runs logged a metric {metric!r} "
                f"(they logged: {', '.join(metric_names) or 'no metrics'})"
            )
        rows = [
            [
                f"parameter {name}",
                *(
                    short_value(record.parameters[name]) if name in record.parameters else ABSENT
                    for record in records
                ),
            ]
            for name in differing
        ] + [
            [
                f"metric {name}",
                *(f"{logged[name]:g}" if name in logged else ABSENT for logged in metrics),
            ]
            for name in metric_names
        ]
        table = Table(
            title="Runs compared",
            columns=["", *(record.id for record in records)],
            rows=rows,
            empty="the runs were given the same parameters and logged no metrics",
        )
        data = {
            "runs": [
                {
                    "id": record.id,
                    "pipeline": record.pipeline,
                    "status": record.status,
                    "started_at": record.started_at.isoformat(),
                    "stack": record.stack_name,
                    "tracker_url": record.tracker_url,
                }
                for record in records
            ],
            "parameters": {
                name: [record.parameters.get(name) for record in records] for name in differing
            },
            "same_parameters": same,
            "metrics": {name: [logged.get(name) for logged in metrics] for name in metric_names},
        }
        chosen = metric or (metric_names[0] if metric_names else None)
        return cls(table=table, same_parameters=same, data=data, metric=chosen)

    def text(self) -> str:
        return self.table.text() + (f"\n  {self._same_line()}" if self.same_parameters else "")

    def html(self) -> str:
        if not self.same_parameters:
            return self.table.html()
        count = len(self.same_parameters)
        return self.table.html() + (
            f"<details><summary>{count} parameter{'' if count == 1 else 's'} the same in every "
            f"run</summary>{html.escape(self._same_line())}</details>"
        )

    def _same_line(self) -> str:
        shared = " ".join(f"{k}={short_value(v)}" for k, v in self.same_parameters.items())
        return f"the same in every run: {shared}"

    @property
    def figures(self) -> list[Any]:
        """The chosen metric across the runs, a bar per run in the order given, for a notebook
        to show under the table; none without matplotlib or without metrics."""
        if self.metric is None:
            return []
        try:
            from matplotlib.figure import Figure
        except ImportError:
            return []
        from IPython.display import Image

        values = [
            float("nan") if value is None else value for value in self.data["metrics"][self.metric]
        ]
        labels = [run["id"] for run in self.data["runs"]]
        figure = Figure(figsize=(max(4.0, 1.4 * len(values)), 3.2), layout="constrained")
        axes = figure.add_subplot()
        bars = axes.bar(range(len(values)), values, color="#1976d2")
        axes.bar_label(bars, labels=[f"{v:g}" if v == v else "none" for v in values])
        axes.set_xticks(range(len(values)), labels, rotation=20, ha="right", fontsize=8)
        axes.margins(y=0.15)  # room for the labels above the bars
        axes.set_title(f"{self.metric} by run")
        axes.set_ylabel(self.metric)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        return [Image(data=buffer.getvalue(), format="png")]


def _in_order(names: Any) -> list[str]:
    """Each name once, where it first appears."""
    return list(dict.fromkeys(names))


def _as_key(parameters: dict[str, Any], name: str) -> str | None:
    """A value as comparable text: ``1`` and ``1.0`` are different parameters; absent is None."""
    if name not in parameters:
        return None
    return json.dumps(parameters[name], sort_keys=True, default=str)
