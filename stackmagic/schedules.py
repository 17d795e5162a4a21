"""Schedules: a pipeline that an orchestrator runs on a cron, and what an orchestrator gets.

An orchestrator that can schedule has two methods (:class:`Scheduling`):
``schedule(request: ScheduleRequest) -> Scheduled`` and
``unschedule(orchestrator_id: str) -> None`` (one already gone is no error).
Each run a schedule starts records itself with the schedule's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .cron import parse_cron
from .errors import StackmagicError
from .stores.models import utcnow

if TYPE_CHECKING:
    from .notebook.exporter import Bundle


@dataclass(frozen=True)
class ScheduleRequest:
    """What an orchestrator needs to run a pipeline on a cron."""

    name: str  # the schedule's name (default: the pipeline's name)
    cron: str  # five cron fields, already checked
    bundle: Bundle  # exported from the notebook
    bundle_uri: str  # the bundle, kept in the stack's artifact store
    notebook: str
    stack_name: str
    parameters: dict[str, Any]  # the values the scheduled runs use (notebook's + -p)
    overridden: list[str]  # names -p changed


@dataclass(frozen=True)
class Scheduled:
    """The schedule as the orchestrator made it."""

    orchestrator_id: str  # KFP recurring run id, "NAMESPACE/CRONJOB", Airflow DAG id
    url: str  # where to see it, or ""


@runtime_checkable
class Scheduling(Protocol):
    """An orchestrator that can run pipelines on a schedule."""

    def schedule(self, request: ScheduleRequest) -> Scheduled: ...

    def unschedule(self, orchestrator_id: str) -> None: ...


class CannotSchedule(StackmagicError):
    """Raised by ``schedule`` when the orchestrator, as its options stand, cannot schedule.

    Its message names it and why ("the kubeflow orchestrator in --mode=local"); the
    command adds the crontab line that would run the pipeline instead.
    """


def check_cron(text: str) -> str:
    """Five cron fields (minute hour day month weekday), checked; macros like @daily spelled out.

    Raises a one-line :class:`StackmagicError` saying what is wrong (one that never
    matches a date, like February 31, too).
    """
    cron = parse_cron(text)
    cron.next_after(utcnow())
    return cron.text
