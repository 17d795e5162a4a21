"""Schedules: pipelines an orchestrator runs on a cron, recorded where their runs are."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from ...errors import NotFound, StackmagicError
from ..models import Run, Schedule, utcnow
from .connection import StoreConnection


@dataclass(frozen=True)
class ScheduleRecord:
    name: str
    pipeline: str
    notebook: str
    stack_name: str
    #: the flavor of the orchestrator that runs it
    orchestrator: str
    cron: str
    parameters: dict[str, Any]
    bundle_uri: str
    orchestrator_id: str
    url: str
    created_at: datetime
    #: the newest run it started, and that run's status; None before its first
    last_run: str | None = None
    last_status: str | None = None


class ScheduleRecords(StoreConnection):
    """Schedules: added once their orchestrator runs them, listed, deleted."""

    def add_schedule(
        self,
        *,
        name: str,
        pipeline: str,
        notebook: str,
        stack_name: str,
        orchestrator: str,
        cron: str,
        parameters: Mapping[str, Any],
        bundle_uri: str,
        orchestrator_id: str,
        url: str,
    ) -> None:
        """Record a schedule; a name taken already (by another process meanwhile) is refused."""
        with self._session(write=True) as session:
            try:
                with session.begin_nested():  # the unique name decides, in the database
                    session.add(
                        Schedule(
                            name=name,
                            pipeline=pipeline,
                            notebook=notebook,
                            stack_name=stack_name,
                            orchestrator=orchestrator,
                            cron=cron,
                            parameters=dict(parameters),
                            bundle_uri=bundle_uri,
                            orchestrator_id=orchestrator_id,
                            url=url,
                            created_at=utcnow(),
                        )
                    )
            except IntegrityError:
                raise StackmagicError(taken(name)) from None

    def schedules(self) -> list[ScheduleRecord]:
        """Every schedule by name, each with the newest run it started."""
        with self._session() as session:
            rows = session.scalars(select(Schedule).order_by(Schedule.name)).all()
            newest = (
                select(Run.schedule, func.max(Run.started_at).label("started"))
                .where(Run.schedule.is_not(None))
                .group_by(Run.schedule)
                .subquery()
            )
            last = {
                schedule: (run_id, status)
                for schedule, run_id, status in session.execute(
                    select(Run.schedule, Run.id, Run.status).join(
                        newest,
                        (Run.schedule == newest.c.schedule) & (Run.started_at == newest.c.started),
                    )
                )
            }
            return [_record(row, *last.get(row.name, (None, None))) for row in rows]

    def schedule_named(self, name: str) -> ScheduleRecord | None:
        with self._session() as session:
            row = session.scalar(select(Schedule).where(Schedule.name == name))
            return None if row is None else _record(row, None, None)

    def schedule(self, name: str) -> ScheduleRecord:
        """One schedule by its name; a missing one says where schedules are listed."""
        found = self.schedule_named(name)
        if found is None:
            raise NotFound(
                f"no schedule {name!r} in the metadata store {self.label} "
                "(`stackmagic pipeline schedules` lists them)"
            )
        return found

    def delete_schedule(self, name: str) -> None:
        with self._session(write=True) as session:
            session.execute(delete(Schedule).where(Schedule.name == name))


def taken(name: str) -> str:
    """Why a schedule cannot have a name another one has."""
    return (
        f"there is a schedule named {name!r} already; give another --name, or "
        f"`stackmagic pipeline unschedule {name}` first"
    )


def _record(row: Schedule, last_run: str | None, last_status: str | None) -> ScheduleRecord:
    return ScheduleRecord(
        name=row.name,
        pipeline=row.pipeline,
        notebook=row.notebook,
        stack_name=row.stack_name,
        orchestrator=row.orchestrator,
        cron=row.cron,
        parameters=row.parameters,
        bundle_uri=row.bundle_uri,
        orchestrator_id=row.orchestrator_id,
        url=row.url,
        created_at=row.created_at,
        last_run=last_run,
        last_status=last_status,
    )
