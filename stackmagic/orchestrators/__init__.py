"""Orchestrators: what runs a pipeline's steps, and where (one interface, one module per flavor).

What a flavor of one's own needs, in public: :class:`Orchestrator` (the interface its
``OrchestratorConfig.orchestrator`` returns) and :class:`RunCancelled` from here; the run's
``RunContext``, ``StepOutcome`` and ``Mode`` from :mod:`stackmagic.runtime`. Only the
interface is imported here: a kernel started from a module of this package loads no more.
"""

from .base import Orchestrator, RunCancelled

__all__ = ["Orchestrator", "RunCancelled"]
