"""``pipeline schedule``, ``pipeline schedules``, ``pipeline unschedule``: pipelines on a cron."""

from __future__ import annotations

from typing import Any

from ..commands import schedules
from . import command, json_flag, parameter_option


def schedule_actions(actions: Any, notebook_action: Any, metadata_stack: str) -> None:
    """The schedule actions of ``pipeline``; ``notebook_action`` makes one on a notebook."""
    schedule = notebook_action(
        actions,
        "schedule",
        schedules.pipeline_schedule,
        "run a notebook's pipeline on a cron, on the stack's orchestrator (Kubeflow, "
        "Kubernetes, Airflow)",
    )
    schedule.add_argument(
        "--cron",
        required=True,
        metavar="CRON",
        help='five fields, minute hour day month weekday, in UTC: "0 3 * * *" runs at 03:00 '
        "every day; @daily, @hourly... too",
    )
    schedule.add_argument(
        "--name", metavar="NAME", help="the schedule's name (default: the pipeline's)"
    )
    schedule.add_argument(
        "--stack", metavar="NAME", help="schedule on this stack (default: the active one)"
    )
    parameter_option(schedule, "a parameter each scheduled run takes (a Python literal, else text)")
    json_flag(schedule)

    listed = command(
        actions,
        "schedules",
        schedules.pipeline_schedules,
        "list schedules: cron, next run, last run",
        prefix="pipeline",
    )
    listed.add_argument("--stack", metavar="NAME", help=metadata_stack)
    json_flag(listed)

    unschedule = command(
        actions,
        "unschedule",
        schedules.pipeline_unschedule,
        "stop a schedule: its orchestrator drops it; its runs stay recorded",
        prefix="pipeline",
    )
    unschedule.add_argument("name", metavar="NAME", help="the schedule's name")
    unschedule.add_argument("--stack", metavar="NAME", help=metadata_stack)
    json_flag(unschedule)
