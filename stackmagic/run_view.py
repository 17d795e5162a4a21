"""How runs are shown: a list of runs, and one run with its steps, outputs and metrics."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from .output import Fields, Table
from .step_io import metrics_summary
from .stores.metadata import MetricPoint, RunRecord, StepRecord

if TYPE_CHECKING:
    from .runtime.cache import Forecast


def runs_table(
    records: list[RunRecord], *, status: str | None = None, pipeline: str | None = None
) -> Table:
    """The runs, a line each; ``status`` and ``pipeline``: what they were chosen by, which
    an empty listing names. A column names the schedule that started a run, where one did."""
    scheduled = any(r.schedule for r in records)
    return Table(
        title="Runs",
        columns=[
            "run",
            "pipeline",
            "status",
            "started",
            "took",
            "parameters",
            "metrics",
            "stack",
            *(["schedule"] if scheduled else []),
        ],
        rows=[
            [
                r.id,
                r.pipeline,
                r.status,
                _when(r.started_at),
                _took(r.seconds),
                " ".join(f"{k}={short_value(v)}" for k, v in changed_parameters(r).items()) or "-",
                _first_metrics(run_metrics(r)),
                r.stack_name,
                *([r.schedule or "-"] if scheduled else []),
            ]
            for r in records
        ],
        data=[run_data(r, detail=False) for r in records],
        empty=_no_runs(status, pipeline),
    )


def _no_runs(status: str | None, pipeline: str | None) -> str:
    if not (status or pipeline):
        return "none yet (run one with `stackmagic pipeline run NOTEBOOK`)"
    chosen = " ".join(filter(None, [status, pipeline and f"of pipeline {pipeline!r}"]))
    return f"none {chosen} (`stackmagic pipeline runs` lists them all)"


def changed_parameters(record: RunRecord) -> dict[str, Any]:
    """The parameters whose values the run changed (``-p``): a run records as given only
    those that differ from the notebook's, in value or type (see ``runtime``)."""
    return {name: record.parameters[name] for name in record.overridden}


def run_metrics(record: RunRecord) -> dict[str, float]:
    """Every step's metrics, the last value of each; ``STEP.name`` where two steps log a name."""
    steps_logging: dict[str, set[str]] = {}
    for step in record.steps:
        for name, _ in step.metrics:
            steps_logging.setdefault(name, set()).add(step.name)
    metrics: dict[str, float] = {}
    for step in record.steps:
        for name, value in step.metrics:
            metrics[name if len(steps_logging[name]) == 1 else f"{step.name}.{name}"] = value
    return metrics


#: The metrics a listing's row shows: a line per run stays readable.
LISTED_METRICS = 3


def _first_metrics(metrics: dict[str, float]) -> str:
    shown = [f"{name}={value:g}" for name, value in list(metrics.items())[:LISTED_METRICS]]
    more = len(metrics) - len(shown)
    return " ".join(shown) + (f" (+{more})" if more else "") or "-"


def short_value(value: Any, width: int = 24) -> str:
    """A parameter's value in a table cell: text as it is, others as Python writes them."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def run_fields(record: RunRecord, *, error_below: bool = False) -> Fields:
    """One run: its facts, then a table of its steps.

    ``error_below``: the run's error line follows (a ``pipeline run`` that failed),
    so the error is said there, once, and not in the status and the step's notes too.
    """
    shown_error = record.error if not error_below else None
    fields = [
        ("pipeline", f"{record.pipeline} ({record.notebook})"),
        ("status", record.status + (f": {shown_error}" if shown_error else "")),
        ("started", _when(record.started_at)),
        ("took", _took(record.seconds)),
        ("stack", record.stack_name),
        *([("schedule", f"started by schedule {record.schedule}")] if record.schedule else []),
        (
            "parameters",
            ", ".join(
                f"{k}={v!r}" + (" (given)" if k in record.overridden else "")
                for k, v in record.parameters.items()
            )
            or "none",
        ),
        ("bundle", record.bundle_uri),
    ]
    if record.orchestrator_url:
        fields.append(("orchestrator", f"{record.orchestrator_run_id}: {record.orchestrator_url}"))
    if record.tracker_url or record.tracker_note:
        fields.append(
            ("tracker", "; ".join(filter(None, [record.tracker_url, record.tracker_note])))
        )
    if record.collected_at:
        fields.append(
            (
                "artifacts",
                f"deleted by `stackmagic gc` on {_when(record.collected_at)}; "
                "those later runs use stay",
            )
        )
    options = [
        f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
        for k, v in record.options.items()
        if v
    ]
    if options:
        fields.append(("asked for", " ".join(options)))
    steps = Table(
        title="Steps",
        columns=["step", "status", "why", "took", "outputs", "metrics", "notes"],
        rows=[_step_row(step, with_error=not error_below) for step in record.steps],
    )
    return Fields(f"Run {record.id}", fields, run_data(record), [steps])


def _step_row(step: StepRecord, *, with_error: bool) -> list[str]:
    notes = []
    if step.cached_from:
        notes.append(f"from {step.cached_from}")
    if step.job_id:
        notes.append(f"job {step.job_id}" + (f": {step.job_url}" if step.job_url else ""))
    if step.error and with_error:
        notes.append(step.error)
    if step.notebook_uri:
        notes.append(f"notebook: {step.notebook_uri}")
    return [
        step.name,
        step.status,
        step.reason or "-",
        _took(step.seconds) if step.status == "completed" else "-",
        ", ".join(f"{name} ({info.materializer})" for name, info in step.outputs.items()) or "-",
        metrics_summary(step.metrics) or "-",
        "; ".join(notes) or "-",
    ]


def run_data(record: RunRecord, *, detail: bool = True) -> dict[str, Any]:
    """A run as JSON; a listing (``detail=False``) leaves out each step's artifacts, which it
    does not read, rather than show them empty, and its metrics, which the run's own show."""
    return {
        "id": record.id,
        "pipeline": record.pipeline,
        "notebook": record.notebook,
        "status": record.status,
        "error": record.error,
        "started_at": record.started_at.isoformat(),
        "ended_at": record.ended_at.isoformat() if record.ended_at else None,
        "stack": record.stack_name,
        "schedule": record.schedule,
        "parameters": record.parameters,
        "overridden": record.overridden,
        "changed_parameters": changed_parameters(record),
        "metrics": run_metrics(record),
        "options": record.options,
        "bundle": record.bundle_uri,
        "orchestrator_run_id": record.orchestrator_run_id,
        "orchestrator_url": record.orchestrator_url,
        "tracker": (
            {
                "url": record.tracker_url,
                "run_id": record.tracker_run_id,
                "note": record.tracker_note,
            }
            if record.tracker_url or record.tracker_note
            else None
        ),
        "collected_at": record.collected_at.isoformat() if record.collected_at else None,
        "steps": [
            {
                "name": step.name,
                "status": step.status,
                "seconds": step.seconds,
                "cache_key": step.cache_key,
                "cached_from": step.cached_from,
                "reason": step.reason,
                "attempts": step.attempts,
                "error": step.error,
                "notebook": step.notebook_uri,
                "job_id": step.job_id,
                "job_url": step.job_url,
                **(
                    {
                        "inputs": {name: info.to_json() for name, info in step.inputs.items()},
                        "outputs": {name: info.to_json() for name, info in step.outputs.items()},
                        "metrics": [
                            {
                                "name": point.name,
                                "value": point.value,
                                **({"step": point.step} if point.step is not None else {}),
                            }
                            for point in step.metric_history
                            or [MetricPoint(*pair) for pair in step.metrics]
                        ],
                    }
                    if detail
                    else {}
                ),
            }
            for step in record.steps
        ],
    }


def forecast_table(pipeline: str, stack: str, forecasts: list[Forecast]) -> Table:
    """``pipeline show --cache``: each step, ``cached`` or why a run would run it now."""
    return Table(
        title=f"Pipeline {pipeline}, if run now on stack {stack}",
        columns=["step", "cached, or why it would run"],
        rows=[[f.step, "cached" if f.hit else str(f.reason)] for f in forecasts],
        data=[
            {
                "name": f.step,
                "cached": f.hit is not None,
                "cached_from_run": f.hit and f.hit.run_id,
                "reason": f.reason,
            }
            for f in forecasts
        ],
    )


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _took(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
