"""Azure Machine Learning for the azureml step operator: one try of a step as a command job.

The job runs the step's command in its image (an anonymous environment) on
--compute-target, or on serverless compute of the VM size that fits the step
(the Spot job tier with --spot). This side signs in as the service principal
(--client-id, --client-secret) or with the Azure chain; the job runs as the
compute's managed identity and reads --store-secret from --key-vault-url
with it. The job's log is its ``user_logs/std_log.txt``, found through the
run history Azure ML studio reads too (the SDK's own streaming blocks until
the job ends).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shlex
from collections.abc import Mapping
from typing import Any

from ..azure_signin import authority_options, explained, read_key_vault_secret
from ..errors import StackmagicError
from ..flavors.step_operators import AzureMLStepOperator
from .base import (
    ENDED,
    FAILED,
    PENDING,
    RUNNING,
    STOPPED,
    SUCCEEDED,
    JobState,
    OperatorJob,
    Resources,
    StepOperator,
)
from .machines import Machine, choose

#: Serverless VM sizes, cheapest first (pay-as-you-go, Linux, East US): vCPUs, GiB, GPUs.
CATALOG = (
    Machine("Standard_D2s_v3", 2, 8),
    Machine("Standard_D4s_v3", 4, 16),
    Machine("Standard_E4s_v3", 4, 32),
    Machine("Standard_DS3_v2", 4, 14),
    Machine("Standard_D8s_v3", 8, 32),
    Machine("Standard_E8s_v3", 8, 64),
    Machine("Standard_NC4as_T4_v3", 4, 28, 1),
    Machine("Standard_NC8as_T4_v3", 8, 56, 1),
    Machine("Standard_D16s_v3", 16, 64),
    Machine("Standard_E16s_v3", 16, 128),
    Machine("Standard_NC16as_T4_v3", 16, 110, 1),
    Machine("Standard_D32s_v3", 32, 128),
    Machine("Standard_E32s_v3", 32, 256),
    Machine("Standard_NC6s_v3", 6, 112, 1),
    Machine("Standard_D64s_v3", 64, 256),
    Machine("Standard_NC24ads_A100_v4", 24, 220, 1),
    Machine("Standard_E64s_v3", 64, 432),
    Machine("Standard_NC64as_T4_v3", 64, 440, 4),
    Machine("Standard_NC12s_v3", 12, 224, 2),
    Machine("Standard_NC48ads_A100_v4", 48, 440, 2),
    Machine("Standard_NC24s_v3", 24, 448, 4),
    Machine("Standard_NC96ads_A100_v4", 96, 880, 4),
    Machine("Standard_ND96asr_v4", 96, 900, 8),
)
RUN_TAG, STEP_TAG, TRY_TAG = "stackmagic-run", "stackmagic-step", "stackmagic-try"
STUDIO = "https://ml.azure.com"
STD_LOG = "user_logs/std_log.txt"
#: Azure ML's own clouds, by their Resource Manager endpoint
CLOUDS = {
    "https://management.azure.com": "AzureCloud",
    "https://management.chinacloudapi.cn": "AzureChinaCloud",
    "https://management.usgovcloudapi.net": "AzureUSGovernment",
}
CLOUD_VARIABLE = "AZUREML_CURRENT_CLOUD"
EXPERIMENTAL_WARNERS = ("azure.ai.ml._utils._experimental", "azure.ai.ml._schema.core.fields")
SIGN_IN_ADVICE = (
    "check --tenant-id, --client-id, --client-secret and --authority-host, or, without "
    "--client-id, the Azure sign-in of this machine (az login, a managed identity)"
)
_PENDING = {"NotStarted", "Queued", "Preparing", "Provisioning", "Starting"}
_RUNNING = {"Running", "Finalizing"}
_STOPPED = {"Canceled", "CancelRequested"}
#: what the run history's error says when a Spot or low-priority VM was taken back
_PREEMPTED = re.compile(r"pre-?empt", re.IGNORECASE)


#: Azure's errors in one line, with the advice of this operator's sign-in options
_explained = functools.partial(explained, sign_in=SIGN_IN_ADVICE)


class AzureML(StepOperator[AzureMLStepOperator]):
    """Command jobs in one workspace: a step's try, followed and stopped."""

    flavor = "azureml"
    secret_manager = "Azure Key Vault"

    def check(self, resources: Resources) -> None:
        config = self.config
        if config.compute_target and (config.spot or config.instance_type):
            raise StackmagicError(
                f"step operator {self.name!r}: --spot and --instance-type are for serverless "
                f"compute, and --compute-target={config.compute_target} has its own VMs; "
                "give one or the other"
            )
        if config.client_id and not (config.tenant_id and config.client_secret):
            raise StackmagicError(
                f"step operator {self.name!r}: a service principal (--client-id) needs "
                "--tenant-id and --client-secret too"
            )
        if config.store_secret and not config.key_vault_url:
            raise StackmagicError(
                f"step operator {self.name!r}: --store-secret={config.store_secret} needs the "
                "Key Vault that holds it: give --key-vault-url"
            )

    def secret_location(self) -> dict[str, Any]:
        if not self.config.store_secret:
            return {}
        return {"name": self.config.store_secret, "vault_url": self.config.key_vault_url}

    def request(
        self, job: OperatorJob, resources: Resources, *, look_up: bool = True
    ) -> dict[str, Any]:
        """The arguments of ``azure.ai.ml.command`` (environment, identity, queue settings
        and limits as plain values); Azure is asked nothing to make them."""
        config = self.config
        name = job.name()
        request: dict[str, Any] = {
            "name": name,
            "display_name": name,
            "description": f"step {job.step} of stackmagic run {job.run_id}, try {job.attempt}",
            "experiment_name": config.experiment,
            "command": shlex.join(job.command()),
            "environment": {"image": resources.image},
            # the job's own identity reads the stores' secret from Key Vault
            "identity": "managed",
            # the step's lines reach std_log.txt as they are printed, not when a buffer fills
            "environment_variables": {"PYTHONUNBUFFERED": "1"},
            "tags": {RUN_TAG: job.run_id, STEP_TAG: job.step, TRY_TAG: str(job.attempt)},
            "timeout": config.max_runtime,
        }
        if config.compute_target:
            request["compute"] = config.compute_target
        else:
            request["instance_type"] = choose(
                CATALOG, resources, config.instance_type, step=job.step, option="--instance-type"
            )
            if config.spot:
                request["queue_settings"] = {"job_tier": "Spot"}
        return request

    @functools.cached_property
    def _client(self) -> Any:
        """The workspace's MLClient, signed in as the service principal or the Azure chain."""
        from azure.ai.ml import MLClient
        from azure.identity import ClientSecretCredential, DefaultAzureCredential

        config = self.config
        options = authority_options(config.authority_host)
        credential: Any = (
            ClientSecretCredential(
                config.tenant_id, config.client_id, self.secret("client_secret"), **options
            )
            if config.client_id
            else DefaultAzureCredential(**options)
        )
        # MLClient names its cloud in this process's environment, where every process started
        # from here on would find a cloud only this one knows: put the environment back
        named = os.environ.get(CLOUD_VARIABLE)
        try:
            return MLClient(
                credential,
                config.subscription_id,
                config.resource_group,
                config.workspace_name,
                show_progress=False,
                enable_telemetry=False,
                **self._cloud(),
            )
        finally:
            if named is None:
                os.environ.pop(CLOUD_VARIABLE, None)
            else:
                os.environ[CLOUD_VARIABLE] = named

    def _cloud(self) -> dict[str, Any]:
        """MLClient's cloud: Azure's own for its endpoints, else one made of --resource-manager-url
        (and --authority-host) for Azure Stack, a private link or a proxy."""
        url = self.config.resource_manager_url.rstrip("/")
        if url in CLOUDS:
            return {"cloud": CLOUDS[url]}
        return {
            "cloud": f"stackmagic {url}",
            "cloud_metadata": {
                "azure_portal": "https://portal.azure.com",
                "resource_manager": url,
                "active_directory": self.config.authority_host
                or "https://login.microsoftonline.com",
                "aml_resource_id": STUDIO,
                "storage_endpoint": "core.windows.net",
                "registry_discovery_endpoint": url,
            },
        }

    def _studio_url(self, name: str) -> str:
        config = self.config
        workspace = (
            f"/subscriptions/{config.subscription_id}/resourcegroups/{config.resource_group}"
            f"/workspaces/{config.workspace_name}"
        )
        return f"{STUDIO}/runs/{name}?wsid={workspace}"

    def submit(self, job: OperatorJob, request: dict[str, Any]) -> tuple[str, str]:
        from azure.ai.ml import command
        from azure.ai.ml.entities import Environment, ManagedIdentityConfiguration, QueueSettings

        # the SDK warns once a process of each experimental class and field a job uses (job
        # tiers, its own schemas): news for its developers, noise in the run's progress
        for warner in EXPERIMENTAL_WARNERS:
            logging.getLogger(warner).setLevel(logging.ERROR)
        arguments = dict(request)
        timeout = arguments.pop("timeout")
        arguments["environment"] = Environment(**arguments["environment"])
        arguments["identity"] = ManagedIdentityConfiguration()
        if "queue_settings" in arguments:
            arguments["queue_settings"] = QueueSettings(**arguments["queue_settings"])
        command_job = command(**arguments)
        command_job.set_limits(timeout=timeout)
        try:
            self._client.jobs.create_or_update(command_job)
        except Exception as error:
            raise _explained(
                f"submit the Azure ML job {request['name']}",
                error,
                "check --subscription-id, --resource-group, --workspace-name, --image and the "
                "service principal's access to the workspace",
            ) from None
        return request["name"], self._studio_url(request["name"])

    def _run_details(self, job_id: str) -> Any:
        """The job's run history record: its log files and, once it failed, its error."""
        try:
            return self._client.jobs._runs_operations.get_run_details(job_id)
        except Exception as error:
            raise _explained(f"read the run history of the Azure ML job {job_id}", error) from None

    def state(self, job_id: str) -> JobState:
        try:
            found = self._client.jobs.get(job_id).status
        except Exception as error:
            raise _explained(f"ask Azure ML about the job {job_id}", error) from None
        status = str(getattr(found, "value", found))  # a JobStatus, or a status it does not know
        if status in _PENDING:
            return JobState(PENDING, status)
        if status in _RUNNING:
            return JobState(RUNNING)
        if status == "Completed":
            return JobState(SUCCEEDED)
        if status in _STOPPED:
            return JobState(STOPPED, status)
        failure = getattr(self._run_details(job_id).error, "error", None)
        reason = f"{failure.code}: {failure.message}" if failure else status
        return JobState(FAILED, reason, interrupted=bool(_PREEMPTED.search(reason)))

    def logs(self, job_id: str, cursor: Any) -> tuple[list[str], Any]:
        """The lines of the job's std_log.txt past ``cursor`` (the lines seen); a last line
        still being written waits for its end."""
        from azure.core import PipelineClient
        from azure.core.rest import HttpRequest

        url = (self._run_details(job_id).log_files or {}).get(STD_LOG)
        if not url:
            return [], cursor or 0  # the job's container has not started yet
        blobs: Any = PipelineClient(url)
        try:  # a SAS URL: the blob's own signature, no token
            with blobs:
                answer = blobs.send_request(HttpRequest("GET", url))
                answer.raise_for_status()
        except Exception as error:
            raise _explained(f"read the log of the Azure ML job {job_id}", error) from None
        lines = answer.text().split("\n")[:-1]
        seen = cursor or 0
        return lines[seen:], len(lines)

    def stop(self, job_id: str) -> None:
        try:
            self._client.jobs.begin_cancel(job_id, polling=False)
        except Exception as error:
            if self.state(job_id).phase in ENDED:
                return  # it ended before it could be stopped
            raise _explained(f"cancel the Azure ML job {job_id}", error) from None

    @staticmethod
    def read_secret(location: Mapping[str, Any]) -> str:
        """The secret's text, read with the job's managed identity (the one Azure ML names in
        DEFAULT_IDENTITY_CLIENT_ID when it is a user-assigned one)."""
        return read_key_vault_secret(
            location["vault_url"],
            location["name"],
            advice="check that the job's managed identity may get secrets of that Key Vault",
            identity_client_id=os.environ.get("DEFAULT_IDENTITY_CLIENT_ID"),
        )


BACKEND = AzureML
