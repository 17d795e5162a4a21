"""The kubeflow orchestrator: a bundle as a Kubeflow Pipelines (KFP v2) pipeline.

The pipeline is built with the kfp SDK, not written as code: one task per
step, each running ``stackmagic_step`` (the runtime on its step of the
bundle kept in the artifact store) in the step's image, which must have
stackmagic installed; nothing is installed when a step runs. The notebook's
parameters are the pipeline's inputs. KFP's own cache is off: stackmagic's
cache decides inside the task and records the step either way, where KFP's
would skip the task and leave the step unrecorded.

``--mode=remote`` uploads the pipeline, starts a run and optionally follows
it; ``--mode=local`` runs the same compiled pipeline on this machine with
``kfp.local``, in a child process so its global configuration and output stay
out of a notebook's kernel.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfp import dsl

from ..component_type import ComponentType
from ..errors import StackmagicError
from ..schedules import CannotSchedule
from ..scratch import ScratchFolder
from ..stores.models import RunStatus
from ..stores.portable import describe_stores, secret_environment, secret_variables
from .base import RunCancelled
from .following import follow, polled, settle_ended, step_outcomes
from .kfp_api import KfpApi
from .kfp_platforms import KubernetesTasks, steps_without_image
from .kfp_task import stackmagic_step

if TYPE_CHECKING:
    from ..flavors.orchestrators import KubeflowOrchestrator
    from ..notebook.exporter import Bundle
    from ..open_stack import OpenStack
    from ..progress import Progress
    from ..runtime import RunContext, StepOutcome
    from ..schedules import Scheduled, ScheduleRequest
    from ..stores.metadata import MetadataStore, RunRecord
    from .kfp_platforms import TaskPlatform

#: Pipeline inputs stackmagic adds beside the notebook's parameters.
RUN_INPUT = "stackmagic_run"
OPTION_INPUTS = {
    "stackmagic_no_cache": bool,
    "stackmagic_only": str,
    "stackmagic_from": str,
    "stackmagic_schedule": str,  # the schedule that starts the run: a recurring run's
}
#: The image steps run in when none is given: kfp.local runs steps here and ignores it.
LOCAL_IMAGE = "python:3.11"
_FINAL_STATES = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"}


def compile_pipeline(
    bundle: Bundle, bundle_uri: str, stack: OpenStack, config: KubeflowOrchestrator, path: Path
) -> None:
    """Write the bundle's KFP pipeline, its tasks pods of a cluster, as YAML to ``path``."""
    compile_tasks(bundle, bundle_uri, stack, KubernetesTasks(config, stack), path)


def compile_tasks(
    bundle: Bundle, bundle_uri: str, stack: OpenStack, platform: TaskPlatform, path: Path
) -> None:
    """Write the bundle's KFP pipeline, its tasks on ``platform``, as YAML to ``path``."""
    from kfp import compiler

    compiler.Compiler().compile(build_pipeline(bundle, bundle_uri, stack, platform), str(path))


def build_pipeline(
    bundle: Bundle, bundle_uri: str, stack: OpenStack, platform: TaskPlatform
) -> Any:
    """The bundle as a KFP pipeline object, ready to compile."""
    stores = describe_stores(stack.name, stack.components)
    secret = platform.secret_location()
    defaults = kfp_inputs(bundle)
    component = dsl.component(
        stackmagic_step, base_image=platform.image or LOCAL_IMAGE, install_kfp_package=False
    )

    signature = inspect.Signature(
        [
            *(
                inspect.Parameter(
                    name,
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=value,
                    annotation=type(value),
                )
                for name, value in defaults.items()
            ),
            inspect.Parameter(
                RUN_INPUT, inspect.Parameter.POSITIONAL_OR_KEYWORD, default="", annotation=str
            ),
            *(
                inspect.Parameter(
                    name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=kind(), annotation=kind
                )
                for name, kind in OPTION_INPUTS.items()
            ),
        ]
    )

    def pipeline(*channels: Any) -> None:
        """Called once by the kfp SDK, with a channel for each input, to record the tasks."""
        inputs = dict(zip(signature.parameters, channels))
        tasks: dict[str, Any] = {}
        for name, spec in bundle.steps.items():
            task = component(
                step=name,
                run=inputs[RUN_INPUT],
                kfp_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                bundle=bundle_uri,
                stores=stores,
                parameters={parameter: inputs[parameter] for parameter in defaults},
                options={
                    "no_cache": inputs["stackmagic_no_cache"],
                    "only": inputs["stackmagic_only"],
                    "from": inputs["stackmagic_from"],
                    "schedule": inputs["stackmagic_schedule"],
                    **({"store_secret": secret} if secret else {}),
                },
            )
            task.set_display_name(name)
            task.set_caching_options(False)
            task.after(*(tasks[upstream] for upstream in spec.upstream))
            platform.dress(task, spec.settings)
            tasks[name] = task

    pipeline.__signature__ = signature  # type: ignore[attr-defined]  # the inputs kfp reads
    pipeline.__name__ = kfp_name(bundle.pipeline)
    return dsl.pipeline(
        name=kfp_name(bundle.pipeline),
        description=f"stackmagic pipeline {bundle.pipeline} from {bundle.manifest['notebook']} "
        f"(bundle {bundle.hash[:12]})",
    )(pipeline)


def kfp_inputs(bundle: Bundle) -> dict[str, Any]:
    """The parameters that are the pipeline's inputs, with their defaults.

    Numbers, booleans and text: what passes through a KFP placeholder intact
    (kfp.local pastes values into JSON unescaped, so text with ``"`` or ``\\``
    and lists or dicts would break it). The others keep the value the run was
    submitted with (its record), or their default in a run started from the KFP UI.
    """
    return {name: value for name, value in bundle.parameters.items() if _passes(value)}


def _passes(value: Any) -> bool:
    if isinstance(value, str):
        return '"' not in value and "\\" not in value
    return isinstance(value, (bool, int, float))


def kfp_name(pipeline: str) -> str:
    """KFP names are lowercase letters, digits and hyphens."""
    cleaned = "".join(c if c.isalnum() else "-" for c in pipeline.lower()).strip("-")
    return cleaned or "pipeline"


class KubeflowRunner:
    """Runs a bundle as a KFP pipeline: submitted to a cluster, or here through kfp.local."""

    def __init__(self, config: KubeflowOrchestrator, stack: OpenStack) -> None:
        self.config, self.stack = config, stack
        self.detached = config.mode == "remote"
        self.submitted = False

    def check(self, bundle: Bundle) -> None:
        if not self.detached:
            return
        missing_image = steps_without_image(bundle, self.config.image)
        if missing_image:
            raise StackmagicError(
                "the kubeflow orchestrator needs an image with stackmagic installed for the steps: "
                "set --image (`stackmagic image dockerfile NOTEBOOK` writes a Dockerfile for one), "
                f"or `%%step --image` on {', '.join(missing_image)}"
            )
        variables = sorted(secret_variables(self.stack.components))
        if variables and not self.config.store_secret:
            raise StackmagicError(
                f"the stack's stores have secret options, which reach the step pods from a "
                f"Kubernetes secret: create one with the keys {', '.join(variables)} "
                f"(`kubectl create secret generic NAME --from-literal={variables[0]}=...`) and "
                f"give it with --store-secret=NAME"
            )

    def run(self, context: RunContext, progress: Progress) -> list[StepOutcome]:
        with ScratchFolder("kfp") as scratch:
            package = Path(scratch) / "pipeline.yaml"
            compile_pipeline(context.bundle, context.bundle_uri, self.stack, self.config, package)
            arguments = pipeline_arguments(context)
            if self.detached:
                return self._submit(context, progress, package, arguments)
            return self._run_here(context, progress, package, arguments, Path(scratch))

    # -- kfp.local -------------------------------------------------------------------

    def _run_here(
        self,
        context: RunContext,
        progress: Progress,
        package: Path,
        arguments: dict[str, Any],
        scratch: Path,
    ) -> list[StepOutcome]:
        from .kfp_here import run_here

        secrets = secret_environment(self.stack.components, self.stack.resolve_secret)
        return run_here(context, progress, package, arguments, scratch, secrets)

    # -- a cluster ---------------------------------------------------------------------

    def _submit(
        self, context: RunContext, progress: Progress, package: Path, arguments: dict[str, Any]
    ) -> list[StepOutcome]:
        api = KfpApi(self.config, self._token())
        name = kfp_name(context.bundle.pipeline)
        pipeline_id, version_id = api.upload(name, package)
        experiment_id = api.experiment(self.config.experiment or name)
        kfp_run_id = api.start_run(
            experiment_id,
            pipeline_id,
            version_id,
            arguments,
            display_name=f"{context.bundle.pipeline} {context.run_id}",
        )
        url = api.run_url(kfp_run_id)
        self.submitted = True
        context.metadata.run_submitted(context.run_id, orchestrator_run_id=kfp_run_id, url=url)
        if context.metadata.cancel_requested(context.run_id):  # cancelled as it was submitted
            _terminate(api, kfp_run_id)
            raise RunCancelled(context.run_id)
        progress.note(f"Kubeflow run {kfp_run_id}: {url}")
        if not context.wait:
            return []
        follow(
            context,
            progress,
            still_going=polled(lambda: api.run_state(kfp_run_id) not in _FINAL_STATES),
            interval=2.0,
        )
        _reconcile(context.metadata, context.run_id, api.run_state(kfp_run_id), url)
        return step_outcomes(context)

    def reconcile(self, record: RunRecord) -> None:
        """Bring a submitted run's record in line with KFP, if KFP ended it and no task said so.

        For ``pipeline describe``: a run whose pods never started stays "running"
        in its record. Without a reachable KFP API the record is shown as it is.
        """
        if not (
            self.detached and record.orchestrator_run_id and record.status == RunStatus.RUNNING
        ):
            return
        with contextlib.suppress(StackmagicError):
            state = KfpApi(self.config, self._token()).run_state(record.orchestrator_run_id)
            if state in _FINAL_STATES:
                _reconcile(self.stack.metadata, record.id, state, record.orchestrator_url or "")

    def terminate(self, record: RunRecord) -> None:
        """For ``pipeline cancel``: terminate the run's twin on KFP, unless it has ended."""
        if self.detached and record.orchestrator_run_id:
            _terminate(KfpApi(self.config, self._token()), record.orchestrator_run_id)

    def schedule(self, request: ScheduleRequest) -> Scheduled:
        """A KFP recurring run of the pipeline; each run it starts is recorded by its tasks."""
        from .kfp_schedules import recurring_run

        if not self.detached:
            raise CannotSchedule(
                "the kubeflow orchestrator runs pipelines on this machine (--mode=local), so it "
                "cannot run them on a schedule"
            )
        return recurring_run(self.config, self.stack, KfpApi(self.config, self._token()), request)

    def unschedule(self, orchestrator_id: str) -> None:
        """Delete the recurring run (one deleted already is no error); its runs stay."""
        KfpApi(self.config, self._token()).delete_recurring_run(orchestrator_id)

    def _token(self) -> str | None:
        if self.config.auth != "token":
            return None
        component = self.stack.components[ComponentType.ORCHESTRATOR]
        return self.stack.resolve_secret(component, "token")


def _terminate(api: KfpApi, kfp_run_id: str) -> None:
    """Terminate a KFP run, unless it has ended or is ending (KFP refuses those)."""
    if api.run_state(kfp_run_id) not in {*_FINAL_STATES, "CANCELING"}:
        api.terminate_run(kfp_run_id)


def _reconcile(metadata: MetadataStore, run_id: str, state: str, url: str) -> None:
    """KFP says the run ended: finish its record if its tasks did not."""
    settle_ended(
        metadata,
        run_id,
        None
        if state == "SUCCEEDED"
        else f"the Kubeflow run ended {state} before its steps recorded their end (see {url})",
    )


def pipeline_arguments(context: RunContext) -> dict[str, Any]:
    """The run's pipeline inputs: its parameters and options, and its stackmagic run id."""
    return {
        **parameter_inputs(context.bundle, context.parameters),
        RUN_INPUT: context.run_id,
        "stackmagic_no_cache": context.no_cache,
        "stackmagic_only": context.only or "",
        "stackmagic_from": context.from_step or "",
        "stackmagic_schedule": "",
    }


def parameter_inputs(bundle: Bundle, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters' values as the pipeline's inputs (those that are inputs)."""
    return {
        name: _as_input(name, parameters[name], default)
        for name, default in kfp_inputs(bundle).items()
    }


def _as_input(name: str, value: Any, default: Any) -> Any:
    """A parameter's value as its KFP input's type, which its default decided.

    The tasks take the value from the run's record, exactly as given; this is
    what the KFP UI shows.
    """
    if isinstance(default, str):
        value = value if isinstance(value, str) else repr(value)
        if not _passes(value):
            raise StackmagicError(
                f'-p {name}: text with " or \\ cannot pass through a Kubeflow input; '
                "give it without them, or as the default in the parameters cell"
            )
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(default):
        raise StackmagicError(
            f"-p {name} {value!r}: the Kubeflow input {name} takes {type(default).__name__} values, "
            f"like its default {default!r}"
        )
    return value
