"""The vertex orchestrator: a bundle as a Vertex AI Pipelines job.

The pipeline is the one the kubeflow orchestrator compiles (one task per step,
each running the runtime on its step), with its tasks dressed for Vertex AI:
no Kubernetes settings, and the stores' secrets read by each task from Secret
Manager (``--store-secret``) as the pipeline's service account. The compiled
spec is submitted as a ``PipelineJob`` through Google's client library
(``aiplatform_v1``, REST transport) with Application Default Credentials; the
tasks record the steps in the metadata store, as on Kubeflow. A schedule is a
Vertex AI schedule whose cron creates such a job.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..component_type import ComponentType
from ..errors import StackmagicError
from ..google_secrets import secret_resource
from ..operators.vertex import SIGN_IN, explained, label
from ..schedules import Scheduled
from ..scratch import ScratchFolder
from ..stores.models import RunStatus
from ..stores.portable import secret_variables
from .base import RunCancelled
from .following import follow, polled, settle_ended, step_outcomes
from .kfp_platforms import set_resources, steps_without_image
from .kfp_schedules import scheduled_arguments
from .kubeflow import compile_tasks, kfp_name, pipeline_arguments
from .vertex_experiments import ensure_experiment, join_experiment

if TYPE_CHECKING:
    from ..flavors.vertex_orchestrator import VertexOrchestrator
    from ..notebook.exporter import Bundle
    from ..open_stack import OpenStack
    from ..progress import Progress
    from ..runtime import RunContext, StepOutcome
    from ..schedules import ScheduleRequest
    from ..stores.metadata import RunRecord

#: The labels that find a run's pipeline job (its stackmagic run id), a schedule's (its name).
RUN_LABEL, SCHEDULE_LABEL = "stackmagic-run", "stackmagic-schedule"
_ENDED = {"SUCCEEDED", "FAILED", "CANCELLED"}


def console_url(name: str) -> str:
    """The job's page in the Google Cloud console, from ``projects/P/locations/L/pipelineJobs/ID``."""
    _, project, _, region, _, job_id = name.split("/")
    return (
        f"https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/{job_id}"
        f"?project={project}"
    )


def schedule_console_url(name: str) -> str:
    """The schedule's page, from ``projects/P/locations/L/schedules/ID``."""
    _, project, _, region, _, schedule_id = name.split("/")
    return (
        f"https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/schedules/"
        f"{schedule_id}/detail?project={project}"
    )


class VertexTasks:
    """Tasks as Vertex AI runs them: resources as machine limits, secrets from Secret Manager."""

    def __init__(self, config: VertexOrchestrator, secrets_wanted: bool) -> None:
        self.config, self.image = config, config.image
        self.secrets_wanted = secrets_wanted

    def dress(self, task: Any, settings: Mapping[str, Any]) -> None:
        set_resources(task, settings, self.config.accelerator_type)

    def secret_location(self) -> dict[str, Any]:
        if not (self.secrets_wanted and self.config.store_secret):
            return {}
        return {
            "name": secret_resource(self.config.store_secret, self.config.project),
            "endpoint": self.config.secret_manager_endpoint,
        }


class VertexRunner:
    """Submits a bundle's pipeline to Vertex AI Pipelines and, with --wait, follows it."""

    detached = True

    def __init__(self, config: VertexOrchestrator, stack: OpenStack) -> None:
        self.config, self.stack = config, stack
        self.submitted = False

    def check(self, bundle: Bundle) -> None:
        missing_image = steps_without_image(bundle, self.config.image)
        if missing_image:
            raise StackmagicError(
                "the vertex orchestrator needs an image with stackmagic and kfp installed for "
                "the steps: set --image (`stackmagic image dockerfile NOTEBOOK` writes a "
                f"Dockerfile for one), or `%%step --image` on {', '.join(missing_image)}"
            )
        variables = sorted(secret_variables(self.stack.components))
        if variables and not self.config.store_secret:
            raise StackmagicError(
                "the stack's stores have secret options, which the tasks read from Secret "
                f'Manager: create a secret holding them as JSON ({{"{variables[0]}": ...}}), '
                "let --service-account read it, and give it with --store-secret=NAME"
            )
        self.pipeline_root()

    def pipeline_root(self) -> str:
        """Where Vertex AI keeps the pipeline's outputs: --pipeline-root, else under the store."""
        if self.config.pipeline_root:
            return self.config.pipeline_root
        store = self.stack.components[ComponentType.ARTIFACT_STORE].config
        path = str(getattr(store, "path", ""))
        if not path.startswith("gs://"):
            raise StackmagicError(
                "the vertex orchestrator needs a gs:// folder for the pipeline's outputs: give "
                "--pipeline-root=gs://BUCKET/FOLDER, or use a gcp artifact store"
            )
        return f"{path.rstrip('/')}/_vertex"

    @property
    def _parent(self) -> str:
        return f"projects/{self.config.project}/locations/{self.config.region}"

    def run(self, context: RunContext, progress: Progress) -> list[StepOutcome]:
        from google.cloud.aiplatform_v1 import PipelineJob

        spec = self._compiled(context.bundle, context.bundle_uri)
        request = self._job(
            f"{kfp_name(context.bundle.pipeline)}-{context.run_id}",
            spec,
            pipeline_arguments(context),
            {RUN_LABEL: label(context.run_id)},
        )
        job = PipelineJob.from_json(json.dumps(request))
        experiment = (
            ensure_experiment(self._metadata, self._parent, self.config.experiment)
            if self.config.experiment
            else ""
        )
        pipelines = self._pipelines
        try:
            created = pipelines.create_pipeline_job(parent=self._parent, pipeline_job=job)
        except Exception as error:
            raise explained(
                f"submit the Vertex AI pipeline job for {context.bundle.pipeline}",
                error,
                "check --project, --region, --pipeline-root and --service-account",
            ) from None
        url = console_url(created.name)
        self.submitted = True
        context.metadata.run_submitted(context.run_id, orchestrator_run_id=created.name, url=url)
        if context.metadata.cancel_requested(context.run_id):  # cancelled as it was submitted
            self._cancel(created.name)
            raise RunCancelled(context.run_id)
        progress.note(f"Vertex AI pipeline job {created.name}: {url}")
        if experiment:
            self._join_experiment(experiment, created.name, progress)
        if not context.wait:
            return []
        follow(
            context,
            progress,
            still_going=polled(
                lambda: self._state(created.name) not in _ENDED, every=self.config.poll_seconds
            ),
            interval=min(2.0, self.config.poll_seconds),
        )
        self._settle(context.run_id, self._state(created.name), url)
        return step_outcomes(context)

    def _join_experiment(self, experiment: str, job: str, progress: Progress) -> None:
        """Add the job to the experiment, which waits for Vertex AI to start the job."""
        named = self.config.experiment
        progress.note(f"adding the job to the Vertex AI experiment {named} as it starts")
        if not join_experiment(
            self._metadata, experiment, lambda: self._run_context(job), self.config.poll_seconds
        ):
            progress.note(f"the job ended before it started: not added to {named}")

    def _run_context(self, name: str) -> str | None:
        """The job's run context: "" until Vertex AI has made it, None if the job ended first."""
        found = self._job_found(name)
        context = str(found.job_detail.pipeline_run_context.name)
        ended = str(found.state.name).removeprefix("PIPELINE_STATE_") in _ENDED
        return context or (None if ended else "")

    def _compiled(self, bundle: Bundle, bundle_uri: str) -> dict[str, Any]:
        """The bundle's pipeline spec, its tasks dressed for Vertex AI."""
        import yaml

        platform = VertexTasks(self.config, bool(secret_variables(self.stack.components)))
        with ScratchFolder("vertex") as scratch:
            package = Path(scratch) / "pipeline.yaml"
            compile_tasks(bundle, bundle_uri, self.stack, platform, package)
            spec: dict[str, Any] = yaml.safe_load(package.read_text(encoding="utf-8"))
        return spec

    def _job(
        self,
        display_name: str,
        spec: dict[str, Any],
        arguments: dict[str, Any],
        labels: dict[str, str],
    ) -> dict[str, Any]:
        """A PipelineJob, as Vertex AI's REST API takes it; no secret in it."""
        config = self.config
        job: dict[str, Any] = {
            "displayName": display_name[:128],
            "pipelineSpec": spec,
            "labels": {**config.labels, **labels},
            "runtimeConfig": {
                "gcsOutputDirectory": self.pipeline_root(),
                "parameterValues": arguments,
            },
        }
        if config.service_account:
            job["serviceAccount"] = config.service_account
        if config.network:
            job["network"] = config.network
        if config.encryption_key:
            job["encryptionSpec"] = {"kmsKeyName": config.encryption_key}
        return job

    def reconcile(self, record: RunRecord) -> None:
        """For ``pipeline describe``: a run whose tasks never started stays "running" in its
        record; Vertex AI says how it ended. Without a reachable Vertex AI it is shown as it is."""
        if not (record.orchestrator_run_id and record.status == RunStatus.RUNNING):
            return
        with contextlib.suppress(StackmagicError):
            state = self._state(record.orchestrator_run_id)
            if state in _ENDED:
                self._settle(record.id, state, record.orchestrator_url or "")

    def terminate(self, record: RunRecord) -> None:
        """For ``pipeline cancel``: cancel the run's pipeline job, unless it has ended."""
        if record.orchestrator_run_id:
            self._cancel(record.orchestrator_run_id)

    def schedule(self, request: ScheduleRequest) -> Scheduled:
        """A Vertex AI schedule that creates a pipeline job at each cron time (UTC), one at a
        time; each run it starts is recorded by its tasks under the job's id."""
        from google.cloud.aiplatform_v1 import Schedule

        job = self._job(
            request.name,
            self._compiled(request.bundle, request.bundle_uri),
            scheduled_arguments(request),
            {SCHEDULE_LABEL: label(request.name)},
        )
        body = {
            "displayName": request.name,
            "cron": f"TZ=UTC {request.cron}",
            "maxConcurrentRunCount": 1,
            "createPipelineJobRequest": {"parent": self._parent, "pipelineJob": job},
        }
        schedules = self._schedules
        try:
            created = schedules.create_schedule(
                parent=self._parent, schedule=Schedule.from_json(json.dumps(body))
            )
        except Exception as error:
            raise explained(
                f"create the Vertex AI schedule {request.name}",
                error,
                "check --project, --region and --service-account",
            ) from None
        return Scheduled(created.name, schedule_console_url(created.name))

    def unschedule(self, orchestrator_id: str) -> None:
        """Delete the schedule (one deleted already is no error); the jobs it started stay."""
        from google.api_core.exceptions import NotFound

        schedules = self._schedules
        try:
            schedules.delete_schedule(name=orchestrator_id)
        except NotFound:
            return
        except Exception as error:
            raise explained(
                f"delete the Vertex AI schedule {orchestrator_id}",
                error,
                f"delete it in the console: {schedule_console_url(orchestrator_id)}",
            ) from None

    def _settle(self, run_id: str, state: str, url: str) -> None:
        """Vertex AI says the job ended: finish the run's record if its tasks did not."""
        error = f"the Vertex AI pipeline job ended {state} before its steps recorded their end"
        settle_ended(
            self.stack.metadata, run_id, None if state == "SUCCEEDED" else f"{error} ({url})"
        )

    @functools.cached_property
    def _pipelines(self) -> Any:
        """Vertex AI's pipeline service, over REST."""
        from google.cloud.aiplatform_v1 import PipelineServiceClient

        return self._client(PipelineServiceClient)

    @functools.cached_property
    def _schedules(self) -> Any:
        """Vertex AI's schedule service, over REST."""
        from google.cloud.aiplatform_v1 import ScheduleServiceClient

        return self._client(ScheduleServiceClient)

    @functools.cached_property
    def _metadata(self) -> Any:
        """Vertex ML Metadata, where experiments are, over REST."""
        from google.cloud.aiplatform_v1 import MetadataServiceClient

        return self._client(MetadataServiceClient)

    def _client(self, kind: Any) -> Any:
        endpoint = self.config.api_endpoint or f"{self.config.region}-aiplatform.googleapis.com"
        try:
            return kind(transport="rest", client_options={"api_endpoint": endpoint})
        except Exception as error:
            raise explained("reach Vertex AI", error, SIGN_IN) from None

    def _job_found(self, name: str) -> Any:
        pipelines = self._pipelines
        try:
            return pipelines.get_pipeline_job(name=name)
        except Exception as error:
            raise explained(
                f"look up the Vertex AI pipeline job {name}", error, "check --project and --region"
            ) from None

    def _state(self, name: str) -> str:
        """The job's state, without its ``PIPELINE_STATE_`` prefix."""
        return str(self._job_found(name).state.name).removeprefix("PIPELINE_STATE_")

    def _cancel(self, name: str) -> None:
        """Cancel the job, unless it has ended or is ending (Vertex AI refuses those)."""
        if self._state(name) in {*_ENDED, "CANCELLING"}:
            return
        pipelines = self._pipelines
        try:
            pipelines.cancel_pipeline_job(name=name)
        except Exception as error:
            raise explained(
                f"cancel the Vertex AI pipeline job {name}",
                error,
                f"cancel it in the console: {console_url(name)}",
            ) from None
