"""The local orchestrator: the DAG on this machine, independent steps in parallel.

Steps are scheduled as soon as their upstream steps succeed, up to
``max_workers`` at once. Kernels for the steps expected to run (not served
from the cache) are started ahead of need. A failed step's dependants are
skipped; independent steps go on, and the run is marked failed.
"""

from __future__ import annotations

import queue
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import papermill  # noqa: F401 - imported once here, not by several step threads at the same time

from ..errors import StackmagicError
from ..runtime import Mode, RunContext, StepOutcome, code_key, may_use_cache, run_step
from ..stores.models import StepStatus
from .kernels import KernelPool, default_workers

if TYPE_CHECKING:
    from ..progress import Progress


class LocalRunner:
    def __init__(self, max_workers: int = 0) -> None:
        self.workers = max_workers or default_workers()

    def run(self, context: RunContext, progress: Progress) -> list[StepOutcome]:
        steps = context.bundle.steps
        wanted = [name for name in steps if context.modes.get(name, Mode.RUN) != Mode.SKIP]
        expected = _expected_to_execute(context, wanted)
        pool = KernelPool(context.bundle.manifest["kernel"], context.workdir)
        events: queue.Queue[tuple[str, str | StepOutcome]] = queue.Queue()
        outcomes: dict[str, StepOutcome] = {}
        waiting = list(wanted)
        running: set[str] = set()
        started: set[str] = set()  # running steps that needed a kernel (not cached)

        def keep_kernels_ready() -> None:
            to_come = [n for n in wanted if n in expected and n not in started and n not in outcomes]
            pool.reserve(min(len(to_come), self.workers, _LOOKAHEAD))

        def work(name: str) -> None:
            try:
                outcome = run_step(context, name, kernel_pool=pool,
                                   on_start=lambda step: events.put(("started", step)))
            except BaseException as error:  # recorded as the step's failure, never lost in a thread
                said = str(error) if isinstance(error, StackmagicError) else f"{type(error).__name__}: {error}"
                outcome = StepOutcome(name, StepStatus.FAILED, 0.0, said)
            events.put(("finished", outcome))

        try:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="step") as executor:
                while waiting or running:
                    for name in _ready(steps, waiting, outcomes, len(running), self.workers):
                        waiting.remove(name)
                        running.add(name)
                        executor.submit(work, name)
                    keep_kernels_ready()
                    if not running:  # what is left waits on failed steps
                        break
                    kind, payload = events.get()
                    if kind == "started":
                        started.add(str(payload))
                        progress.step_started(str(payload))
                        continue
                    assert isinstance(payload, StepOutcome)
                    running.discard(payload.step)
                    outcomes[payload.step] = payload
                    progress.step_finished(payload)
                    if payload.status == StepStatus.FAILED:
                        skipped = _dependants(steps, payload.step) & set(waiting)
                        for name in sorted(skipped, key=wanted.index):
                            waiting.remove(name)
                            outcomes[name] = StepOutcome(name, StepStatus.SKIPPED, 0.0)
                            progress.step_finished(outcomes[name])
                        context.metadata.steps_skipped(
                            context.run_id, sorted(skipped), f"step {payload.step!r} failed"
                        )
        finally:
            pool.close()
        return [outcomes[name] for name in wanted if name in outcomes]


#: Kernels started ahead at most: more only compete for the CPU with the running steps.
_LOOKAHEAD = 3


def _ready(steps, waiting: list[str], outcomes: dict[str, StepOutcome], busy: int, workers: int):
    done = {name for name, o in outcomes.items() if o.status in StepStatus.WITH_OUTPUTS}
    ready = [name for name in waiting if set(steps[name].upstream) <= done]
    return ready[: max(0, workers - busy)]


def _dependants(steps, failed: str) -> set[str]:
    found: set[str] = set()
    frontier = {failed}
    while frontier:
        frontier = {name for name, spec in steps.items() if frontier & set(spec.upstream)} - found
        found |= frontier
    return found


def _expected_to_execute(context: RunContext, wanted: list[str]) -> set[str]:
    """Steps that will probably need a kernel: no cached result can exist for them.

    A guess, to start kernels early: a step that turns out cached leaves a
    spare kernel, one that was not expected starts its kernel when it runs.
    """
    expected: set[str] = set()
    steps = context.bundle.steps
    for name in wanted:
        mode = context.modes.get(name, Mode.RUN)
        if mode == Mode.CACHED:
            continue
        if (
            not may_use_cache(context, name)
            or expected & set(steps[name].upstream)
            or not context.metadata.has_code_key(code_key(context.bundle, name, context.parameters))
        ):
            expected.add(name)
    return expected
