"""A whole recorded run on a cloud VM: what the VM's startup script starts.

``python -m stackmagic.runtime vm LAUNCH`` gets everything from LAUNCH (the
launcher wrote it into the startup script; it holds no secret): the run, the
stores' description, where the log goes and how to find this VM. It reads
the stores' secrets from the cloud's secret manager (never from the script),
runs every step with the local orchestrator, keeps its log in the artifact
store as it goes, records how the run ended, and deletes its own VM, success
or failure, unless the orchestrator keeps it alive.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TextIO

from ..background import repeating
from ..command_word import CommandWord
from ..operators.driving import StepOperatorDriver
from ..progress import LogLines, TextSink
from ..scratch import ScratchFolder
from ..stores.artifacts import ArtifactStore
from ..stores.metadata import MetadataStore
from ..stores.portable import open_stores, wanted_secrets
from . import recorded_context
from .task import forget_secrets

#: How often the log is copied to the artifact store while the run goes on.
LOG_EVERY_SECONDS = 5.0


@dataclass
class Launch(CommandWord):
    """What a VM needs to carry on a recorded run; no secret."""

    called: ClassVar[str] = "launch description"

    run_id: str
    #: 1 for the first VM of the run, 2 for the one started after it was preempted, ...
    attempt: int
    stores: dict[str, Any]
    log_uri: str
    #: how this VM finds itself to delete itself: the cloud and its ids
    machine: dict[str, Any]
    #: a secret of the cloud's secret manager with the stores' secret options, or ""
    store_secret: str
    keep_alive: bool


def run_on_vm(launch: Launch) -> str | None:
    """Carry on the run here; returns why it failed, or None. The VM is deleted in any case."""
    from ..orchestrators import clouds

    cloud = clouds.for_machine(launch.machine)
    artifact_store: ArtifactStore | None = None
    with ScratchFolder("vm") as scratch:
        log_path = Path(scratch) / "vm.log"
        with log_path.open("w") as log_file:
            log = _Tee(log_file, sys.stdout)
            say = functools.partial(print, file=log, flush=True)

            def copy_log() -> None:
                if artifact_store is not None:
                    with contextlib.suppress(Exception):  # the next copy makes a missed one good
                        artifact_store.put_file(log_path, launch.log_uri)

            try:
                say(
                    f"stackmagic: run {launch.run_id}, try {launch.attempt}, on "
                    f"{cloud.describe(launch.machine)}"
                )
                if launch.store_secret:
                    secret = cloud.read_secret(launch.machine, launch.store_secret)
                    os.environ.update(wanted_secrets(launch.store_secret, secret, launch.stores))
                artifact_store, metadata = open_stores(launch.stores)
                step_operator = StepOperatorDriver.from_description(launch.stores)
                forget_secrets(launch.stores)  # the stores have them; the steps' code must not
                with repeating(LOG_EVERY_SECONDS, copy_log, "log-copy"):
                    error = _run(launch, artifact_store, metadata, step_operator, log)
                say(
                    f"stackmagic: run {launch.run_id} "
                    f"{'failed: ' + error if error else 'completed'}"
                )
                return error
            except BaseException as failure:  # a store or the VM broke: said in the log
                say(f"stackmagic: the run stopped: {type(failure).__name__}: {failure}")
                raise
            finally:
                if not launch.keep_alive:
                    say(f"stackmagic: deleting this VM ({cloud.describe(launch.machine)})")
                copy_log()  # with its last lines
                if not launch.keep_alive:
                    cloud.delete_self(launch.machine)


def _run(
    launch: Launch,
    artifact_store: ArtifactStore,
    metadata: MetadataStore,
    step_operator: StepOperatorDriver | None,
    log: TextSink,
) -> str | None:
    """Run the recorded run's steps here with the local orchestrator; record how it ended."""
    from ..orchestrators.local import LocalRunner
    from ..pipelines import fetch_bundle, first_failure

    error: str | None = "the run stopped before its steps ended"
    try:
        with ScratchFolder("bundle") as scratch:
            record = metadata.run(launch.run_id)
            bundle = fetch_bundle(artifact_store, record.bundle_uri, Path(scratch))
            context = recorded_context(record, bundle, artifact_store, metadata)
            context.resumed = launch.attempt > 1  # what the lost VM finished stays
            context.step_operator = step_operator
            progress = LogLines(log)
            progress.run_started(record.id, bundle.pipeline, list(bundle.steps))
            with metadata.keeping_alive(record.id):
                error = first_failure(LocalRunner().run(context, progress))
    finally:
        metadata.run_finished(launch.run_id, error=error)
        metadata.close()
    return error


class _Tee(io.TextIOBase):
    """Lines to the log file and to the VM's console."""

    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()
