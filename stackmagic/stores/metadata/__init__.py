"""The metadata store: every run, step run, artifact, parameter and metric.

One class over SQLAlchemy 2, so the same code serves SQLite (the default, in
``.stackmagic/``) and database servers. Every change is one short transaction.
Its methods live by record kind: ``runs``, ``steps`` and ``cache``, over the
``connection`` they share; ``records`` holds what they hand out.
"""

from __future__ import annotations

from .cache import CacheRecords
from .connection import BUSY_TIMEOUT_SECONDS
from .records import CacheHit, PreviousStep, RunRecord, StepRecord, StoredArtifact
from .runs import ABANDONED_AFTER_SECONDS, HEARTBEAT_SECONDS, RunRecords, this_runner
from .steps import StepRecords


class MetadataStore(RunRecords, StepRecords, CacheRecords):
    """A metadata store, opened: its schema is up to date (see ``connection``)."""


__all__ = [
    "ABANDONED_AFTER_SECONDS",
    "BUSY_TIMEOUT_SECONDS",
    "HEARTBEAT_SECONDS",
    "CacheHit",
    "MetadataStore",
    "PreviousStep",
    "RunRecord",
    "StepRecord",
    "StoredArtifact",
    "this_runner",
]
