"""Step operator flavors: one step of a pipeline on a backend of its own (a GPU job, a pod).

The options are declared here, light to import; the backend that submits,
follows and stops the job is in ``stackmagic.operators``, imported when a
step runs (its SDK is an extra).
"""

from __future__ import annotations

from typing import Any

import traitlets as t

from .base import StepOperatorConfig
from .kubernetes_pods import KubernetesPods


class SageMakerStepOperator(StepOperatorConfig):
    """Runs a step as an AWS SageMaker training job."""

    flavor = "sagemaker"
    module, sdk, extra = "stackmagic.operators.sagemaker", "boto3", "aws"

    role = t.Unicode(help="IAM role ARN the job runs as.").tag(required=True)
    region = t.Unicode("us-east-1", help="AWS region.")
    instance_type = t.Unicode(
        help="SageMaker instance type, ml.g5.xlarge say; default: the smallest that fits the "
        "step's --cpu, --memory and --gpu."
    )
    instance_count = t.Int(
        1, help="Instances of the job; each runs the step (for a step that trains across them)."
    )
    volume_size_gb = t.Int(30, help="Storage volume of each instance, in GB.")
    spot = t.Bool(False, help="Managed spot training: cheaper, may be interrupted.")
    max_wait = t.Int(
        0,
        help="With --spot: seconds to wait for spot capacity and run; default: twice --max-runtime.",
    )
    subnets = t.List(t.Unicode(), help="VPC subnet ids, comma-separated.")
    security_groups = t.List(t.Unicode(), help="VPC security group ids, comma-separated.")
    tags = t.Dict(help="Tags of the job, KEY=VALUE,KEY=VALUE.")
    output_path = t.Unicode(
        help="s3:// folder SageMaker keeps the job's output in; default: sagemaker in the "
        "artifact store's folder (an S3 artifact store's)."
    )
    endpoint_url = t.Unicode(
        help="Endpoint of SageMaker, CloudWatch Logs and Secrets Manager (for the job's secret "
        "too); default: AWS's for the region."
    )

    @t.validate("instance_count")
    def _check_instances(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 1:
            raise t.TraitError("expects 1 or more")
        return proposal["value"]


class AzureMLStepOperator(StepOperatorConfig):
    """Runs a step as an Azure Machine Learning command job."""

    flavor = "azureml"
    module, sdk, extra = "stackmagic.operators.azureml", "azure.ai.ml", "azureml"

    subscription_id = t.Unicode(help="Azure subscription id.").tag(required=True)
    resource_group = t.Unicode(help="Resource group of the workspace.").tag(required=True)
    workspace_name = t.Unicode(help="Azure ML workspace.").tag(required=True)
    compute_target = t.Unicode(
        help="Compute cluster the step runs on; default: serverless compute."
    )
    instance_type = t.Unicode(
        help="VM size for serverless compute, Standard_NC4as_T4_v3 say; default: the smallest "
        "that fits the step's --cpu, --memory and --gpu."
    )
    spot = t.Bool(
        False, help="Serverless compute on Spot VMs (job tier Spot): cheaper, may be preempted."
    )
    tenant_id = t.Unicode(help="Tenant of the service principal.")
    client_id = t.Unicode(help="Service principal (application) id; default: the Azure chain.")
    client_secret = t.Unicode(help="Service principal secret.").tag(secret=True)
    key_vault_url = t.Unicode(
        help="Key Vault (https://NAME.vault.azure.net) that holds --store-secret."
    )
    experiment = t.Unicode("stackmagic", help="Experiment Azure ML studio groups the jobs under.")
    resource_manager_url = t.Unicode(
        "https://management.azure.com", help="Azure Resource Manager endpoint."
    )
    authority_host = t.Unicode(
        help="Microsoft Entra authority for the service principal; default: Azure's public one."
    )


class VertexStepOperator(StepOperatorConfig):
    """Runs a step as a Vertex AI custom job."""

    flavor = "vertex"
    module, sdk, extra = "stackmagic.operators.vertex", "google.cloud.aiplatform", "vertex"

    project = t.Unicode(help="Google Cloud project.").tag(required=True)
    region = t.Unicode("us-central1", help="Region of the job.")
    machine_type = t.Unicode(
        help="Machine type, n1-standard-8 say; default: the smallest that fits the step's "
        "--cpu and --memory."
    )
    accelerator_type = t.Enum(
        [
            "NVIDIA_TESLA_T4",
            "NVIDIA_TESLA_P4",
            "NVIDIA_TESLA_P100",
            "NVIDIA_TESLA_V100",
            "NVIDIA_TESLA_A100",
            "NVIDIA_L4",
        ],
        "NVIDIA_TESLA_T4",
        help="Accelerator a step with --gpu gets: T4, P4, P100 and V100 on an N1 machine, "
        "A100 on an A2 one, L4 on a G2 one.",
    )
    spot = t.Bool(False, help="Spot VMs: cheaper, may be preempted.")
    service_account = t.Unicode(help="Service account e-mail the job runs as.")
    network = t.Unicode(help="VPC network to peer, projects/NUMBER/global/networks/NAME.")
    staging_bucket = t.Unicode(help="gs:// bucket for the job's staging files.")
    api_endpoint = t.Unicode(help="Vertex AI API endpoint; default: the region's.")
    logging_endpoint = t.Unicode(
        "https://logging.googleapis.com",
        help="Cloud Logging API endpoint the job's log is read at.",
    )
    secret_manager_endpoint = t.Unicode(
        "https://secretmanager.googleapis.com",
        help="Secret Manager API endpoint the job reads --store-secret at.",
    )


class KubernetesStepOperator(KubernetesPods, StepOperatorConfig):
    """Runs a step as a Kubernetes Job in a cluster."""

    flavor = "kubernetes"
    module, sdk, extra = "stackmagic.operators.kubernetes", "kubernetes", "kubernetes"
