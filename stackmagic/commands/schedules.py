"""Schedules: run a notebook's pipeline on a cron, list the schedules, drop one."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from ..cron import parse_cron
from ..output import Fields, Message, Output, Table
from ..registry import Registry
from ..stores.metadata import ScheduleRecord
from ..stores.models import utcnow
from .pipelines import _parameters as given_parameters
from .pipelines import notebook_path


def pipeline_schedule(args: argparse.Namespace) -> Output:
    from ..scheduling import schedule

    record = schedule(
        notebook_path(args.notebook, args.command_words),
        cron=args.cron,
        name=args.name,
        parameters=given_parameters(args),
        stack=args.stack,
    )
    words = parse_cron(record.cron).words()
    fields = [
        ("pipeline", f"{record.pipeline} ({record.notebook})"),
        ("cron", f"{record.cron} ({words or 'UTC'})"),
        ("next run", f"{_next_run(record):%Y-%m-%d %H:%M} UTC"),
        ("stack", f"{record.stack_name} ({record.orchestrator} orchestrator)"),
        ("parameters", _parameters(record.parameters)),
        ("at the orchestrator", record.url or record.orchestrator_id),
        ("its runs", "`stackmagic pipeline runs` marks them with the schedule's name"),
    ]
    return Fields(f"Scheduled {record.name}", fields, schedule_data(record))


def pipeline_schedules(args: argparse.Namespace) -> Output:
    from ..open_stack import OpenStack

    with OpenStack.open(Registry.open(), args.stack) as opened:
        records = opened.metadata.schedules()
    return Table(
        title="Schedules",
        columns=["name", "pipeline", "cron", "next run (UTC)", "stack", "last run", "where"],
        rows=[
            [
                record.name,
                record.pipeline,
                record.cron,
                f"{_next_run(record):%Y-%m-%d %H:%M}",
                record.stack_name,
                f"{record.last_run} ({record.last_status})" if record.last_run else "-",
                record.url or record.orchestrator_id,
            ]
            for record in records
        ],
        data=[schedule_data(record) for record in records],
        empty='none (`stackmagic pipeline schedule NOTEBOOK --cron "0 3 * * *"` makes one)',
    )


def pipeline_unschedule(args: argparse.Namespace) -> Output:
    from ..scheduling import unschedule

    record = unschedule(args.name, stack=args.stack)
    return Message(
        f"Unscheduled {record.name}: its {record.orchestrator} orchestrator dropped "
        f"{record.orchestrator_id}; the runs it started stay recorded",
        schedule_data(record),
    )


def schedule_data(record: ScheduleRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "pipeline": record.pipeline,
        "notebook": record.notebook,
        "stack": record.stack_name,
        "orchestrator": record.orchestrator,
        "cron": record.cron,
        "next_run": _next_run(record).isoformat(),
        "parameters": record.parameters,
        "bundle": record.bundle_uri,
        "orchestrator_id": record.orchestrator_id,
        "url": record.url,
        "created_at": record.created_at.isoformat(),
        "last_run": record.last_run,
        "last_status": record.last_status,
    }


def _next_run(record: ScheduleRecord) -> datetime:
    """When the schedule runs next (UTC)."""
    return parse_cron(record.cron).next_after(utcnow())


def _parameters(values: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in values.items()) or "none"
