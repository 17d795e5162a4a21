"""The local orchestrator: the DAG on this machine, independent steps in parallel.

Steps are scheduled as soon as their upstream steps succeed, up to
``max_workers`` at once. Kernels for the steps expected to run (not served
from the cache) are started ahead of need. A failed step's dependants are
skipped; independent steps go on, and the run is marked failed. Progress is
reported from the calling thread only, so displays are never updated at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from ..errors import StackmagicError
from ..progress import StepJob
from ..runtime import (
    INTERRUPTED,
    Mode,
    RunContext,
    StepOutcome,
    may_use_cache,
    remove_leftovers,
    run_step,
)
from ..runtime.cache import StepInputs, code_key, step_parts
from ..runtime.dag import downstream
from ..runtime.task import skip_reasons
from ..stores.models import StepStatus
from .base import RunCancelled
from .kernels import (
    MANAGERS,
    KernelPool,
    check_kernel,
    close_thread_loop,
    import_in_one_thread,
    import_papermill,
)
from .warm import WarmKernelPool, run_setup

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..notebook.exporter import Bundle
    from ..progress import Progress

#: Kernels started ahead at most: more only compete for the CPU with the running steps.
_LOOKAHEAD = 3


def default_workers() -> int:
    """Steps at once when the orchestrator does not say: Python's own rule for waiting work."""
    return min(32, (os.cpu_count() or 1) + 4)


class LocalRunner:
    detached = submitted = False

    def __init__(self, max_workers: int = 0, warm_steps: bool = True) -> None:
        self.workers = max_workers or default_workers()
        self.warm_steps = warm_steps

    def check(self, bundle: Bundle) -> None:
        check_kernel(bundle.manifest["kernel"])

    def run(self, context: RunContext, progress: Progress) -> list[StepOutcome]:
        kernel, env = context.bundle.manifest["kernel"], context.artifact_store.secret_environment()
        pool = (
            WarmKernelPool(
                kernel,
                context.workdir,
                lambda: run_setup(context.bundle, context.overrides),
                env,
                on_note=lambda line: schedule.events.put(("note", line)),
            )
            if self.warm_steps
            else KernelPool(kernel, context.workdir, env)
        )
        schedule = _Schedule(context, progress, pool, self.workers)
        context.on_progress = lambda kind, news: schedule.events.put((kind, news))
        try:
            with (
                _quiet_once_stopped(pool),
                context.metadata.watching_for_cancel(context.run_id, schedule.cancel),
                ThreadPoolExecutor(self.workers, thread_name_prefix="step") as executor,
            ):
                try:
                    schedule.run(executor)
                except BaseException:  # Ctrl-C, a cancel: stop the kernels, so steps end now
                    pool.close()
                    raise
        except RunCancelled:  # the steps stopped (and recorded themselves failed) by now
            context.metadata.run_cancelled(context.run_id, interrupted=schedule.running)
            for name in sorted(schedule.running):  # as recorded, not as their kernels died
                progress.step_finished(StepOutcome(name, StepStatus.CANCELLED, 0.0))
            raise
        finally:
            pool.close()
            remove_leftovers(context)
        return schedule.outcomes()


@contextlib.contextmanager
def _quiet_once_stopped(pool: KernelPool) -> Iterator[None]:
    """Papermill says nothing more once the run stops its kernels (a cancel, Ctrl-C): each
    step's "Kernel died while waiting for execute reply" would be news of what was asked."""

    def still_running(record: logging.LogRecord) -> bool:
        return not pool.stopped

    papermill_log = logging.getLogger("papermill")
    papermill_log.addFilter(still_running)
    try:
        yield
    finally:
        papermill_log.removeFilter(still_running)


class _Schedule:
    """One run's steps: which wait, which run, how each ended."""

    def __init__(
        self, context: RunContext, progress: Progress, pool: KernelPool, workers: int
    ) -> None:
        self.context, self.progress, self.pool, self.workers = context, progress, pool, workers
        self.steps = context.bundle.steps
        self.wanted = [n for n in self.steps if context.modes.get(n, Mode.RUN) != Mode.SKIP]
        self.expected = _expected_to_execute(context, self.wanted)
        self.waiting = list(self.wanted)
        self.running: set[str] = set()
        self.executing: set[str] = set()  # running steps past the cache: they hold a kernel
        self.finished: dict[str, StepOutcome] = {}
        #: ("started", (step, why it runs)), ("finished", outcome), ("note", line to show) or
        #: ("job", StepJob), from the worker threads and the kernel pool; ("cancel", None) from
        #: the cancel watch
        self.events: queue.Queue[
            tuple[str, tuple[str, str] | StepOutcome | StepJob | str | None]
        ] = queue.Queue()

    def cancel(self) -> None:
        """From another thread: stop the run (the scheduling thread raises :class:`RunCancelled`)."""
        self.events.put(("cancel", None))

    def outcomes(self) -> list[StepOutcome]:
        return [self.finished[name] for name in self.wanted if name in self.finished]

    def run(self, executor: ThreadPoolExecutor) -> None:
        while self.waiting or self.running:
            for name in self._ready():
                self.waiting.remove(name)
                self.running.add(name)
                executor.submit(self._work, name)
            self._keep_kernels_ready()
            if not self.running:  # what is left waits on failed steps
                return
            kind, payload = self.events.get()
            if kind == "cancel":
                raise RunCancelled(self.context.run_id)
            if isinstance(payload, StepOutcome):
                if payload.error == INTERRUPTED and self.context.metadata.cancel_requested(
                    self.context.run_id
                ):  # a step operator's job saw the cancel first: the step is among the running
                    raise RunCancelled(self.context.run_id)
                self._finish(payload)
            elif isinstance(payload, str):
                self.progress.note(payload)
            elif isinstance(payload, StepJob):
                self.progress.step_job(payload)
            elif payload is not None:
                name, reason = payload
                self.executing.add(name)
                self.progress.step_started(name, reason)

    def _work(self, name: str) -> None:
        """In a worker thread: run one step; whatever happens, report how it ended."""
        try:
            outcome = run_step(
                self.context,
                name,
                kernel_pool=self.pool,
                on_start=self._started,
            )
        except BaseException as error:  # recorded as the step's failure, never lost in a thread
            said = (
                str(error)
                if isinstance(error, StackmagicError)
                else f"{type(error).__name__}: {error}"
            )
            outcome = StepOutcome(name, StepStatus.FAILED, 0.0, said)
        finally:
            close_thread_loop()
        self.events.put(("finished", outcome))

    def _started(self, step: str, reason: str) -> None:
        """In a worker thread: the step found no cached result, its notebook runs now."""
        import_papermill()
        self.events.put(("started", (step, reason)))

    def _finish(self, outcome: StepOutcome) -> None:
        self.running.discard(outcome.step)
        self.finished[outcome.step] = outcome
        self.progress.step_finished(outcome)
        if outcome.status != StepStatus.FAILED:
            return
        later = downstream(self.steps, outcome.step)
        for name in [n for n in self.waiting if n in later]:
            self.waiting.remove(name)
            self.finished[name] = StepOutcome(name, StepStatus.SKIPPED, 0.0)
            self.progress.step_finished(self.finished[name])
        # steps an earlier failure skipped may depend on this one too: their reasons name all
        failed = [n for n, o in self.finished.items() if o.status == StepStatus.FAILED]
        skipped = [n for n in self.wanted if n in later]
        self.context.metadata.steps_skipped(
            self.context.run_id, skip_reasons(self.context, failed, skipped)
        )

    def _ready(self) -> list[str]:
        done = {n for n, o in self.finished.items() if o.status in StepStatus.WITH_OUTPUTS}
        ready = [n for n in self.waiting if set(self.steps[n].upstream) <= done]
        return ready[: max(0, self.workers - len(self.running))]

    def _keep_kernels_ready(self) -> None:
        to_come = [
            n
            for n in self.wanted
            if n in self.expected and n not in self.executing and n not in self.finished
        ]
        count = min(len(to_come), self.workers, _LOOKAHEAD)
        if count:  # jupyter_client before the pool's threads need it, papermill while they work
            import_in_one_thread(MANAGERS)
        self.pool.reserve(count)
        if count:
            import_papermill()


def _expected_to_execute(context: RunContext, wanted: list[str]) -> set[str]:
    """Steps that will probably need a kernel: no cached result can exist for them.

    A guess, to start kernels early: a step that turns out cached leaves a
    spare kernel, one that was not expected starts its kernel when it runs.
    A step that runs as a job elsewhere (a step operator's, a pod) needs none here.
    """
    expected: set[str] = set()
    steps = context.bundle.steps
    for name in wanted:
        if context.modes.get(name, Mode.RUN) == Mode.CACHED:
            continue
        if (
            not may_use_cache(context, name)
            or expected & set(steps[name].upstream)
            or not context.metadata.has_code_key(
                code_key(step_parts(context.bundle, name, context.parameters, StepInputs({}, {})))
            )
        ):
            expected.add(name)
    return {name for name in expected if context.driver_for(name) is None}
