"""The metadata store: every run, step run, artifact, parameter and metric.

One class over SQLAlchemy 2, so the same code serves SQLite (the default, in
``.stackmagic/``) and database servers. Every change is one short transaction.
Its methods live by record kind: ``runs``, ``steps``, ``cache`` and
``collection`` (what ``stackmagic gc`` asks), ``cancelling`` and ``schedules``, over the
``connection`` they share; ``records`` holds what they hand out, and
``liveness`` judges whether a run's process still lives.
"""

from __future__ import annotations

from .cache import CacheRecords
from .cancelling import AlreadyEnded, CancellingRecords
from .collection import CollectionRecords, RunSummary
from .connection import BUSY_TIMEOUT_SECONDS
from .liveness import ABANDONED_AFTER_SECONDS, HEARTBEAT_SECONDS, this_runner
from .records import CacheHit, MetricPoint, PreviousStep, RunRecord, StepRecord, StoredArtifact
from .runs import RunRecords
from .schedules import ScheduleRecord, ScheduleRecords
from .steps import StepRecords


class MetadataStore(
    RunRecords, StepRecords, CacheRecords, CollectionRecords, CancellingRecords, ScheduleRecords
):
    """A metadata store, opened: its schema is up to date (see ``connection``)."""


__all__ = [
    "ABANDONED_AFTER_SECONDS",
    "AlreadyEnded",
    "BUSY_TIMEOUT_SECONDS",
    "HEARTBEAT_SECONDS",
    "CacheHit",
    "MetadataStore",
    "MetricPoint",
    "PreviousStep",
    "RunRecord",
    "RunSummary",
    "ScheduleRecord",
    "StepRecord",
    "StoredArtifact",
    "this_runner",
]
