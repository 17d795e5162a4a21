"""Past runs: list them, describe one, compare several."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..flavors import ComponentType
from ..output import Output
from ..registry import Registry

#: What ``pipeline runs --status`` takes: every status a run can have (``RunStatus``'s),
#: written here so the parser need not import the store's models.
RUN_STATUSES = ("running", "completed", "failed", "preempted", "cancelled")


def pipeline_runs(args: argparse.Namespace) -> Output:
    from ..open_stack import OpenStack
    from ..run_view import runs_table

    with OpenStack.open(Registry.open(), args.stack) as opened:
        return runs_table(
            opened.metadata.runs(pipeline=args.pipeline, status=args.status, limit=args.limit),
            status=args.status,
            pipeline=args.pipeline,
        )


def pipeline_describe(args: argparse.Namespace) -> Output:
    from ..open_stack import OpenStack
    from ..run_view import run_fields

    with OpenStack.open(Registry.open(), args.stack) as opened:
        record = opened.metadata.run(args.run_id)
        orchestrator = opened.orchestrator_config
        if record.orchestrator_run_id and orchestrator.flavor == record.stack.get(
            ComponentType.ORCHESTRATOR.value, {}
        ).get("flavor"):  # ask how it ended
            reconcile = getattr(orchestrator.orchestrator(opened), "reconcile", None)
            if reconcile is not None:
                reconcile(record)
                record = opened.metadata.run(record.id)
        return run_fields(record)


def pipeline_compare(args: argparse.Namespace) -> Output:
    from ..comparison import Comparison
    from ..open_stack import OpenStack

    if len(args.run_ids) < 2:
        raise UsageError(
            "give two runs or more to compare (`stackmagic pipeline runs` lists them)",
            args.command_words,
        )
    with OpenStack.open(Registry.open(), args.stack) as opened:
        records = [opened.metadata.run(run_id) for run_id in args.run_ids]
    seen: dict[str, str] = {}
    for given, record in zip(args.run_ids, records):
        if record.id in seen:
            raise UsageError(
                f"{seen[record.id]!r} and {given!r} are the same run, {record.id}; "
                "give different runs",
                args.command_words,
            )
        seen[record.id] = given
    return Comparison.of(records, metric=args.metric)
