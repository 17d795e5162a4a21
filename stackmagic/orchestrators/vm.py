"""The cloud-VM orchestrators: the whole pipeline on one VM started for the run.

The bundle is in the (remote) artifact store already; the run is recorded
here. A VM starts with a startup script that runs ``python -m
stackmagic.runtime vm LAUNCH`` (in ``--image`` with Docker, or straight on
the VM image), which carries on the recorded run, writes its log to the
artifact store and deletes the VM. The script holds no secret: the VM reads
the stores' secrets from the cloud's secret manager, and its bucket rights
come from its service account or instance profile.

With ``--wait`` this process follows the run: the VM's log and the steps'
records as they change. A VM that ends before the run did was preempted (or
stopped from outside): the run is started again on a new VM up to
``--retries`` times, which keeps the steps the lost VM finished, and is
marked ``preempted`` after that. ``pipeline cancel`` deletes the VM; the run
on it stops its steps as soon as it sees the request in the metadata store.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from ..errors import StackmagicError
from ..output import Fields, Output
from ..runtime.vm import Launch
from ..stores.models import RunStatus
from ..stores.portable import describe_stores, secret_variables
from .base import RunCancelled
from .following import follow, polled, step_outcomes

if TYPE_CHECKING:
    from ..flavors.vm_orchestrators import VMOrchestrator
    from ..notebook.exporter import Bundle
    from ..open_stack import OpenStack
    from ..progress import Progress
    from ..runtime import RunContext, StepOutcome
    from ..stores.artifacts import ArtifactStore
    from ..stores.metadata import MetadataStore, RunRecord
    from .clouds import VMCloud

#: How often the instance's state is asked while following (an API call each time).
STATE_EVERY_SECONDS = 15.0
FOLLOW_EVERY_SECONDS = 2.0


def vm_log_uri(store: ArtifactStore, pipeline: str, run_id: str, attempt: int) -> str:
    """Where the VM of a run's try keeps its log."""
    return store.uri(pipeline, run_id, f"vm-{attempt}.log")


def startup_script(launch: Launch, image: str, gpus: int) -> str:
    """The VM's startup script: run the runtime, then power off if it could not even start."""
    command = ["python3", "-m", "stackmagic.runtime", "vm", launch.encode()]
    if image:
        command = [
            "docker",
            "run",
            "--rm",
            "--network=host",
            *(["--gpus=all"] if gpus else []),
            image,
            *command,
        ]
    keep = "true" if launch.keep_alive else "false"
    return "\n".join(
        [
            "#!/bin/bash",
            f"# stackmagic: carry on run {launch.run_id} (try {launch.attempt}) on this VM, "
            "which deletes itself at the end.",
            "# It holds no secret: the stores' secrets come from the cloud's secret manager.",
            shlex.join(command),
            "status=$?",
            "# the runtime deletes this VM when it ends; if it could not start, power off",
            f'if [ "$status" -gt 1 ] && [ "{keep}" != true ]; then ${{STACKMAGIC_POWEROFF:-poweroff}}; fi',
            "exit $status",
            "",
        ]
    )


class VMRunner:
    """Launches a run on a cloud VM and, with ``--wait``, follows it there."""

    detached = True

    def __init__(self, config: VMOrchestrator, stack: OpenStack, cloud: VMCloud[Any]) -> None:
        self.config, self.stack, self.cloud = config, stack, cloud
        self.submitted = False

    def check(self, bundle: Bundle) -> None:
        if not self.config.image and not self.cloud.image_has_python():
            raise StackmagicError(
                f"the {self.config.flavor} orchestrator needs --image (a container image with "
                f"stackmagic installed; `stackmagic image dockerfile NOTEBOOK` writes its "
                f"Dockerfile), or {self.cloud.image_option} naming a VM image that has Python "
                "and stackmagic"
            )
        variables = sorted(secret_variables(self.stack.components))
        if variables and not self.config.store_secret:
            raise StackmagicError(
                f"the stack's stores have secret options, which reach the VM from "
                f"{self.cloud.secret_manager}, never from its startup script: create a secret "
                f"holding the JSON object {{{', '.join(f'{v!r}: ...' for v in variables)}}} "
                f"and give it with --store-secret=NAME"
            )

    def _launch(
        self,
        run_id: str,
        pipeline: str,
        attempt: int,
        *,
        look_up: bool = True,
    ) -> tuple[Launch, dict[str, Any], str, dict[str, Any]]:
        """The launch description, the machine, its startup script and the cloud's request.

        Made from the stack's options: no store is read or written, no database asked.
        """
        machine = self.cloud.machine(run_id, attempt)
        launch = Launch(
            run_id=run_id,
            attempt=attempt,
            stores=describe_stores(self.stack.name, self.stack.components),
            log_uri=vm_log_uri(self.stack.artifact_store, pipeline, run_id, attempt),
            machine=machine,
            store_secret=self.config.store_secret,
            keep_alive=self.config.keep_alive,
        )
        script = startup_script(launch, self.config.image, self.config.gpu_count)
        return launch, machine, script, self.cloud.launch_request(machine, script, look_up=look_up)

    def preview(self, run_id: str, pipeline: str) -> Output:
        """What ``pipeline run --dry-run`` shows: the request and the script, nothing started."""
        launch, _, script, request = self._launch(run_id, pipeline, 1, look_up=False)
        return Fields(
            f"Dry run: {self.config.flavor} would start this VM for the pipeline "
            f"{pipeline} (nothing was started or recorded)",
            [("launch request", _without(script, request)), ("startup script", script)],
            {"request": request, "startup_script": script, "launch": launch.__dict__},
            stacked=True,
        )

    def run(self, context: RunContext, progress: Progress) -> list[StepOutcome]:
        attempt = 1
        machine, instance = self._start(context, attempt, progress)
        if not context.wait:
            return []
        while True:
            self._follow_try(context, progress, machine, instance, attempt)
            if context.metadata.run(context.run_id).status != RunStatus.RUNNING:
                return step_outcomes(context)
            if context.metadata.cancel_requested(context.run_id):  # its VM was deleted for it
                context.metadata.run_cancelled(context.run_id)
                return step_outcomes(context)
            if attempt > self.config.retries:
                _mark_lost(context.metadata, context.run_id, instance, self.config.retries)
                return step_outcomes(context)
            attempt += 1
            progress.warn(
                f"the VM {instance} ended before the run did (preempted?): starting "
                f"try {attempt} of {self.config.retries + 1} on a new VM, which keeps "
                "the steps it finished"
            )
            machine, instance = self._start(context, attempt, progress)

    def _follow_try(
        self,
        context: RunContext,
        progress: Progress,
        machine: dict[str, Any],
        instance: str,
        attempt: int,
    ) -> None:
        """Show the VM's log and the steps until the run ends or the VM does."""
        shown = _LogFollower(context, progress, attempt)
        vm_running = polled(
            lambda: self.cloud.state(machine, instance) == "running", STATE_EVERY_SECONDS
        )

        def still_going() -> bool:
            shown.more()
            return vm_running()

        follow(context, progress, interval=FOLLOW_EVERY_SECONDS, still_going=still_going)
        shown.more()  # the last lines

    def _start(
        self, context: RunContext, attempt: int, progress: Progress
    ) -> tuple[dict[str, Any], str]:
        launch, machine, _, request = self._launch(context.run_id, context.bundle.pipeline, attempt)
        instance, url = self.cloud.launch(machine, request)
        try:
            context.metadata.run_submitted(context.run_id, orchestrator_run_id=instance, url=url)
        except BaseException:  # a VM nobody follows or records: gone again
            self.cloud.delete(machine, instance)
            raise
        self.submitted = True
        if context.metadata.cancel_requested(context.run_id):  # cancelled as it was launched
            self.cloud.delete(machine, instance)
            raise RunCancelled(context.run_id)
        progress.note(
            f"{self.config.flavor}: VM {instance} started for run {context.run_id} "
            f"(try {attempt}); its log: {launch.log_uri}"
        )
        return machine, instance

    def terminate(self, record: RunRecord) -> None:
        """For ``pipeline cancel``: delete the run's VM, which stops it, if it still runs."""
        instance = record.orchestrator_run_id
        if not instance:
            return
        machine = self.cloud.machine(record.id, 0)  # where to ask; the instance is recorded
        if self.cloud.state(machine, instance) == "running":
            self.cloud.delete(machine, instance)

    def reconcile(self, record: RunRecord) -> None:
        """For ``pipeline describe``: a run whose VM is gone but which never ended was lost."""
        if not (record.orchestrator_run_id and record.status == RunStatus.RUNNING):
            return
        machine = self.cloud.machine(record.id, 0)  # where to ask; the instance is recorded
        try:
            state = self.cloud.state(machine, record.orchestrator_run_id)
        except StackmagicError:
            return  # the cloud cannot be asked now: the record is shown as it is
        if state != "running":  # run_lost leaves a run that ended meanwhile as it is
            _mark_lost(self.stack.metadata, record.id, record.orchestrator_run_id, retries=None)


def _mark_lost(metadata: MetadataStore, run_id: str, instance: str, retries: int | None) -> None:
    tries = (
        "" if retries is None else f" ({retries} relaunch{'es' if retries != 1 else ''} allowed)"
    )
    metadata.run_lost(run_id, f"preempted: the VM {instance} ended before the run did{tries}")


def _without(script: str, request: dict[str, Any]) -> str:
    """The request as JSON, the script (shown beside it) named rather than repeated, also
    where the cloud takes it in base64 (Azure's custom data)."""
    import base64
    import json

    encoded = base64.b64encode(script.encode()).decode()

    def shown(value: Any) -> Any:
        if value == script:
            return "(the startup script below)"
        if value == encoded:
            return "(the startup script below, in base64)"
        if isinstance(value, dict):
            return {key: shown(item) for key, item in value.items()}
        if isinstance(value, list):
            return [shown(item) for item in value]
        return value

    return json.dumps(shown(request), indent=2)


class _LogFollower:
    """Shows the lines the VM added to its log since the last look."""

    def __init__(self, context: RunContext, progress: Progress, attempt: int) -> None:
        self.context, self.progress, self.attempt, self.seen = context, progress, attempt, 0

    def more(self) -> None:
        """A log not there yet, or unreadable now, is looked at again next time."""
        store = self.context.artifact_store
        uri = vm_log_uri(store, self.context.bundle.pipeline, self.context.run_id, self.attempt)
        try:
            lines = store.read_bytes(uri).decode(errors="replace").splitlines()
        except Exception:  # noqa: BLE001 - not written yet, or the store is slow: next time
            return
        for line in lines[self.seen :]:
            self.progress.note(f"vm | {line}")
        self.seen = max(self.seen, len(lines))
