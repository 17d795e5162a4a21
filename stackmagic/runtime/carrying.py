"""Carrying on a recorded run in a process of its own: a cloud VM, an orchestrator pod.

Such a process runs the run's steps with the local orchestrator and records
how the run ended; its log goes to its console and, every few seconds and at
the end, to the artifact store, where ``pipeline logs`` finds it after the
machine or pod is gone.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from ..background import repeating
from ..operators.driving import StepOperatorDriver
from ..progress import LogLines
from ..scratch import ScratchFolder
from ..stores.artifacts import ArtifactStore
from ..stores.metadata import MetadataStore
from . import recorded_context

#: How often the log is copied to the artifact store while the run goes on.
LOG_EVERY_SECONDS = 5.0


class RunLog(io.TextIOBase):
    """Lines to a log file and to the console; the file copied to the artifact store."""

    def __init__(self, path: Path, console: TextIO, uri: str) -> None:
        self.path, self.console, self.uri = path, console, uri
        self.file = path.open("w")
        self.store: ArtifactStore | None = None

    def write(self, text: str) -> int:
        for stream in (self.file, self.console):
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        self.file.flush()
        self.console.flush()

    def say(self, line: str) -> None:
        print(line, file=self, flush=True)

    def copy(self) -> None:
        """To the artifact store, once it is open; a missed copy is made good by the next."""
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.put_file(self.path, self.uri)

    @contextlib.contextmanager
    def copied_to(self, store: ArtifactStore) -> Iterator[None]:
        """Copied to ``store`` now, and every few seconds while the block runs."""
        self.store = store
        self.copy()
        with repeating(LOG_EVERY_SECONDS, self.copy, "log-copy"):
            yield


@contextlib.contextmanager
def run_log(console: TextIO, uri: str) -> Iterator[RunLog]:
    """A log in a scratch folder, copied a last time when the block ends, however it ends."""
    with ScratchFolder("log") as scratch:
        log = RunLog(Path(scratch) / "run.log", console, uri)
        try:
            yield log
        finally:
            log.copy()
            log.file.close()


def carry_on(
    run_id: str,
    artifact_store: ArtifactStore,
    metadata: MetadataStore,
    log: RunLog,
    *,
    resumed: bool,
    step_operator: StepOperatorDriver | None,
    step_jobs: StepOperatorDriver | None = None,
    max_workers: int = 0,
) -> str | None:
    """Run the recorded run's steps here with the local orchestrator; record how it ended.

    ``resumed``: the steps an earlier, lost process finished stay as they are.
    ``step_jobs``: what runs each step as a job elsewhere (a pod), not on a kernel here.
    """
    from ..orchestrators.local import LocalRunner
    from ..pipelines import fetch_bundle, first_failure

    error: str | None = "the run stopped before its steps ended"
    try:
        with ScratchFolder("bundle") as scratch:
            record = metadata.run(run_id)
            bundle = fetch_bundle(artifact_store, record.bundle_uri, Path(scratch))
            context = recorded_context(record, bundle, artifact_store, metadata)
            context.resumed = resumed
            context.step_operator, context.step_jobs = step_operator, step_jobs
            progress = LogLines(log)
            progress.run_started(record.id, bundle.pipeline, list(bundle.steps))
            with metadata.keeping_alive(record.id):
                error = first_failure(LocalRunner(max_workers).run(context, progress))
    finally:
        metadata.run_finished(run_id, error=error)
        metadata.close()
    return error
