"""Step operator flavors: run single steps on specialised cloud backends."""

from __future__ import annotations

import traitlets as t

from .base import StepOperatorConfig


class SageMakerStepOperator(StepOperatorConfig):
    """Runs a step as an AWS SageMaker training job."""

    flavor = "sagemaker"

    role = t.Unicode(help="IAM role ARN the job runs as.").tag(required=True)
    region = t.Unicode("us-east-1", help="AWS region.")
    instance_type = t.Unicode("ml.m5.large", help="SageMaker instance type.")
    image = t.Unicode(help="Container image of the step (with stackmagic installed).")


class AzureMLStepOperator(StepOperatorConfig):
    """Runs a step as an Azure Machine Learning job."""

    flavor = "azureml"

    subscription_id = t.Unicode(help="Azure subscription id.").tag(required=True)
    resource_group = t.Unicode(help="Resource group of the workspace.").tag(required=True)
    workspace_name = t.Unicode(help="Azure ML workspace.").tag(required=True)
    compute_target = t.Unicode(help="Compute cluster the step runs on.").tag(required=True)
    image = t.Unicode(help="Container image of the step (with stackmagic installed).")
    tenant_id = t.Unicode(help="Tenant of the service principal.")
    client_id = t.Unicode(help="Service principal (application) id.")
    client_secret = t.Unicode(help="Service principal secret.").tag(secret=True)
