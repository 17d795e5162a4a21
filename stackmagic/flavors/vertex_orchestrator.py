"""The vertex orchestrator flavor: a pipeline as a Vertex AI Pipelines job."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

import traitlets as t

from ..errors import StackmagicError
from .base import OrchestratorConfig, require_module

if TYPE_CHECKING:
    from ..open_stack import OpenStack
    from ..orchestrators.base import Orchestrator

#: ``projects/P/locations/L/keyRings/R/cryptoKeys/K``: a Cloud KMS key, as Vertex AI takes it
_KMS_KEY = re.compile(r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+")
#: a Vertex AI experiment's name (its metadata context's id)
_EXPERIMENT = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")


class VertexOrchestrator(OrchestratorConfig):
    """Vertex AI Pipelines: the pipeline compiled as for Kubeflow, run as a PipelineJob."""

    flavor = "vertex"
    #: what a step image needs: kfp's executor starts each task (and brings google-auth,
    #: which reads --store-secret); submitting needs google-cloud-aiplatform, the gcp extra's
    extra: ClassVar[str] = "kubeflow"

    project = t.Unicode(help="Google Cloud project.").tag(required=True)
    region = t.Unicode("us-central1", help="Region the pipeline runs in.")
    pipeline_root = t.Unicode(
        help="gs:// folder for the pipeline's outputs; default: _vertex under the artifact "
        "store's path (a gs:// one)."
    )
    image = t.Unicode(help="Container image the steps run in (with stackmagic and kfp installed).")
    service_account = t.Unicode(help="Service account e-mail the pipeline's tasks run as.")
    network = t.Unicode(help="VPC network to peer, projects/NUMBER/global/networks/NAME.")
    encryption_key = t.Unicode(
        help="Cloud KMS key the job and its outputs are encrypted with, "
        "projects/P/locations/L/keyRings/R/cryptoKeys/K."
    )
    labels = t.Dict(help="Labels for the pipeline jobs, KEY=VALUE,KEY=VALUE.")
    experiment = t.Unicode(
        help="Vertex AI experiment each run's job is added to (made if missing); the job "
        "joins it as it starts, so `pipeline run` waits for that."
    )
    store_secret = t.Unicode(
        help="Secret Manager secret holding the stores' secret options as JSON "
        '({"STACKMAGIC_METADATA_STORE_PASSWORD": ...}); each task reads it as --service-account.'
    )
    accelerator_type = t.Unicode(
        "NVIDIA_TESLA_T4", help="Accelerator a step with %%step --gpu gets, NVIDIA_L4 say."
    )
    api_endpoint = t.Unicode(help="Vertex AI API endpoint; default: the region's.")
    secret_manager_endpoint = t.Unicode(
        "https://secretmanager.googleapis.com",
        help="Secret Manager API endpoint the tasks read --store-secret at.",
    )
    poll_seconds = t.Float(10.0, help="How often a followed job's state is asked.")

    @t.validate("poll_seconds")
    def _check_poll(self, proposal: dict[str, Any]) -> float:
        if not 0.1 <= proposal["value"] <= 600:
            raise t.TraitError("expects from 0.1 to 600 seconds")
        return float(proposal["value"])

    @t.validate("pipeline_root")
    def _check_root(self, proposal: dict[str, Any]) -> str:
        value: str = proposal["value"]
        if value and not value.startswith("gs://"):
            raise t.TraitError("expects a gs:// folder, gs://bucket/pipelines say")
        return value

    @t.validate("experiment")
    def _check_experiment(self, proposal: dict[str, Any]) -> str:
        value: str = proposal["value"]
        if value and not _EXPERIMENT.fullmatch(value):
            raise t.TraitError(
                "expects lower-case letters, digits and '-', starting with a letter or digit, "
                "128 at most"
            )
        return value

    @t.validate("encryption_key")
    def _check_key(self, proposal: dict[str, Any]) -> str:
        value: str = proposal["value"]
        if value and not _KMS_KEY.fullmatch(value):
            raise t.TraitError("expects projects/P/locations/L/keyRings/R/cryptoKeys/K")
        return value

    def orchestrator(self, stack: OpenStack) -> Orchestrator:
        require_module("kfp", "the vertex orchestrator", self.extra)
        require_module("google.cloud.aiplatform", "the vertex orchestrator", "gcp")
        from ..orchestrators.vertex import VertexRunner

        return VertexRunner(self, stack)

    def check(self) -> None:
        super().check()
        if self.service_account and not self.service_account.endswith(".gserviceaccount.com"):
            raise StackmagicError(
                "--service-account takes a service account's e-mail, "
                "NAME@PROJECT.iam.gserviceaccount.com"
            )
