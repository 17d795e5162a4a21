"""How runs are shown: a list of runs, and one run with its steps, outputs and metrics."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from .output import Fields, Table
from .stores.metadata import RunRecord, StepRecord

if TYPE_CHECKING:
    from .runtime.cache import Forecast


def runs_table(records: list[RunRecord]) -> Table:
    return Table(
        title="Runs",
        columns=["run", "pipeline", "status", "started", "took", "steps", "stack"],
        rows=[
            [
                r.id,
                r.pipeline,
                r.status,
                _when(r.started_at),
                _took(r.seconds),
                _step_counts(r),
                r.stack_name,
            ]
            for r in records
        ],
        data=[run_data(r, detail=False) for r in records],
        empty="none yet (run one with `stackmagic pipeline run NOTEBOOK`)",
    )


def run_fields(record: RunRecord) -> Fields:
    """One run: its facts, then a table of its steps."""
    fields = [
        ("pipeline", f"{record.pipeline} ({record.notebook})"),
        ("status", record.status + (f": {record.error}" if record.error else "")),
        ("started", _when(record.started_at)),
        ("took", _took(record.seconds)),
        ("stack", record.stack_name),
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
        rows=[_step_row(step) for step in record.steps],
    )
    return Fields(f"Run {record.id}", fields, run_data(record), [steps])


def _step_row(step: StepRecord) -> list[str]:
    notes = []
    if step.cached_from:
        notes.append(f"from {step.cached_from}")
    if step.error:
        notes.append(step.error)
    if step.notebook_uri:
        notes.append(f"notebook: {step.notebook_uri}")
    return [
        step.name,
        step.status,
        step.reason or "-",
        _took(step.seconds) if step.status == "completed" else "-",
        ", ".join(f"{name} ({info.materializer})" for name, info in step.outputs.items()) or "-",
        ", ".join(f"{name}={value:g}" for name, value in step.metrics) or "-",
        "; ".join(notes) or "-",
    ]


def run_data(record: RunRecord, *, detail: bool = True) -> dict[str, Any]:
    """A run as JSON; a listing (``detail=False``) leaves out each step's artifacts and metrics,
    which it does not read, rather than show them empty."""
    return {
        "id": record.id,
        "pipeline": record.pipeline,
        "notebook": record.notebook,
        "status": record.status,
        "error": record.error,
        "started_at": record.started_at.isoformat(),
        "ended_at": record.ended_at.isoformat() if record.ended_at else None,
        "stack": record.stack_name,
        "parameters": record.parameters,
        "overridden": record.overridden,
        "options": record.options,
        "bundle": record.bundle_uri,
        "orchestrator_run_id": record.orchestrator_run_id,
        "orchestrator_url": record.orchestrator_url,
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
                **(
                    {
                        "inputs": {name: info.to_json() for name, info in step.inputs.items()},
                        "outputs": {name: info.to_json() for name, info in step.outputs.items()},
                        "metrics": [{"name": name, "value": value} for name, value in step.metrics],
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


def _step_counts(record: RunRecord) -> str:
    counts: dict[str, int] = {}
    for step in record.steps:
        counts[step.status] = counts.get(step.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _took(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
