"""Schedules on Kubeflow Pipelines: a recurring run of the compiled pipeline.

The pipeline is compiled and uploaded as for a run (the same version, when
the notebook is the same). The recurring run gives no stackmagic run id, so
each run it starts is recorded by its first task under its KFP run id, with
the schedule's name, which reaches the tasks as a pipeline input.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StackmagicError
from ..schedules import Scheduled, ScheduleRequest
from ..scratch import ScratchFolder
from .kubeflow import RUN_INPUT, compile_pipeline, kfp_inputs, kfp_name, parameter_inputs

if TYPE_CHECKING:
    from ..flavors.orchestrators import KubeflowOrchestrator
    from ..open_stack import OpenStack
    from .kfp_api import KfpApi


def recurring_run(
    config: KubeflowOrchestrator, stack: OpenStack, api: KfpApi, request: ScheduleRequest
) -> Scheduled:
    bundle = request.bundle
    arguments = scheduled_arguments(request)
    name = kfp_name(bundle.pipeline)
    with ScratchFolder("kfp") as scratch:
        package = Path(scratch) / "pipeline.yaml"
        compile_pipeline(bundle, request.bundle_uri, stack, config, package)
        pipeline_id, version_id = api.upload(name, package)
    experiment_id = api.experiment(config.experiment or name)
    recurring_run_id = api.create_recurring_run(
        experiment_id,
        pipeline_id,
        version_id,
        arguments,
        display_name=request.name,
        description=f"stackmagic schedule {request.name}: {bundle.pipeline} from "
        f"{request.notebook} at {request.cron} (UTC)",
        cron=kfp_cron(request.cron),
    )
    return Scheduled(recurring_run_id, api.recurring_run_url(recurring_run_id))


def scheduled_arguments(request: ScheduleRequest) -> dict[str, Any]:
    """The pipeline inputs of each run a schedule starts (on Kubeflow or Vertex AI)."""
    bundle = request.bundle
    not_inputs = [name for name in request.overridden if name not in kfp_inputs(bundle)]
    if not_inputs:
        raise StackmagicError(
            f'-p {not_inputs[0]}: only numbers, booleans and text without " or \\ pass '
            "through a Kubeflow input, which a scheduled run reads its values from; make it "
            "the default in the parameters cell instead"
        )
    return {
        **parameter_inputs(bundle, request.parameters),
        RUN_INPUT: "",  # each run is recorded under its KFP run id
        "stackmagic_no_cache": False,
        "stackmagic_only": "",
        "stackmagic_from": "",
        "stackmagic_schedule": request.name,
    }


def kfp_cron(cron: str) -> str:
    """KFP's cron has six fields, seconds first: the five-field one at second 0."""
    return f"0 {cron}"
