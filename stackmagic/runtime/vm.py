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

import os
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

from ..command_word import CommandWord
from ..operators.driving import StepOperatorDriver
from ..stores.portable import open_stores, wanted_secrets
from .carrying import carry_on, run_log
from .task import forget_secrets


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
    with run_log(sys.stdout, launch.log_uri) as log:
        try:
            log.say(
                f"stackmagic: run {launch.run_id}, try {launch.attempt}, on "
                f"{cloud.describe(launch.machine)}"
            )
            if launch.store_secret:
                secret = cloud.read_secret(launch.machine, launch.store_secret)
                os.environ.update(wanted_secrets(launch.store_secret, secret, launch.stores))
            artifact_store, metadata = open_stores(launch.stores)
            step_operator = StepOperatorDriver.from_description(launch.stores)
            forget_secrets(launch.stores)  # the stores have them; the steps' code must not
            with log.copied_to(artifact_store):
                error = carry_on(
                    launch.run_id,
                    artifact_store,
                    metadata,
                    log,
                    resumed=launch.attempt > 1,  # what the lost VM finished stays
                    step_operator=step_operator,
                )
            log.say(
                f"stackmagic: run {launch.run_id} {'failed: ' + error if error else 'completed'}"
            )
            return error
        except BaseException as failure:  # a store or the VM broke: said in the log
            log.say(f"stackmagic: the run stopped: {type(failure).__name__}: {failure}")
            raise
        finally:
            if not launch.keep_alive:
                log.say(f"stackmagic: deleting this VM ({cloud.describe(launch.machine)})")
                log.copy()  # with its last lines
                cloud.delete_self(launch.machine)
