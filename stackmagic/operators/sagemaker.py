"""SageMaker for the sagemaker step operator: one try of a step as a training job.

The job's container runs the step's command. SageMaker takes a command as
``ContainerEntrypoint`` plus ``ContainerArguments``, each word at most 256
characters, and the job's description is longer than that: the entrypoint is
a shell line that joins the arguments (the description in pieces) back into
the one word the command ends with. Its log is CloudWatch's, one stream per
instance; the stores' secrets it reads itself from Secrets Manager, through
the job's role.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Mapping
from typing import Any

from ..errors import StackmagicError
from ..flavors.step_operators import SageMakerStepOperator
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

#: Training instance types, cheapest first (on-demand, us-east-1): vCPUs, GiB, GPUs.
CATALOG = (
    Machine("ml.m5.large", 2, 8),
    Machine("ml.c5.xlarge", 4, 8),
    Machine("ml.m5.xlarge", 4, 16),
    Machine("ml.c5.2xlarge", 8, 16),
    Machine("ml.m5.2xlarge", 8, 32),
    Machine("ml.g4dn.xlarge", 4, 16, 1),
    Machine("ml.c5.4xlarge", 16, 32),
    Machine("ml.m5.4xlarge", 16, 64),
    Machine("ml.g4dn.2xlarge", 8, 32, 1),
    Machine("ml.g5.xlarge", 4, 16, 1),
    Machine("ml.g4dn.4xlarge", 16, 64, 1),
    Machine("ml.g5.2xlarge", 8, 32, 1),
    Machine("ml.c5.9xlarge", 36, 72),
    Machine("ml.g5.4xlarge", 16, 64, 1),
    Machine("ml.g4dn.8xlarge", 32, 128, 1),
    Machine("ml.m5.12xlarge", 48, 192),
    Machine("ml.g5.8xlarge", 32, 128, 1),
    Machine("ml.c5.18xlarge", 72, 144),
    Machine("ml.p3.2xlarge", 8, 61, 1),
    Machine("ml.g4dn.12xlarge", 48, 192, 4),
    Machine("ml.g5.16xlarge", 64, 256, 1),
    Machine("ml.g4dn.16xlarge", 64, 256, 1),
    Machine("ml.m5.24xlarge", 96, 384),
    Machine("ml.g5.12xlarge", 48, 192, 4),
    Machine("ml.g5.24xlarge", 96, 384, 4),
    Machine("ml.p3.8xlarge", 32, 244, 4),
    Machine("ml.g5.48xlarge", 192, 768, 8),
    Machine("ml.p3.16xlarge", 64, 488, 8),
)
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
RUN_TAG, STEP_TAG, TRY_TAG = "stackmagic-run", "stackmagic-step", "stackmagic-try"
#: SageMaker's limits on a container argument's length and on the number of arguments
ARGUMENT_LENGTH, ARGUMENTS = 256, 100
#: SageMaker's longest MaxRuntimeInSeconds: 28 days
LONGEST_RUNTIME = 28 * 24 * 3600
#: what a spot job's end says when its instances were taken back
_SPOT_WORDS = ("spot", "capacity", "interrupt")


@functools.cache
def _client(service: str, region: str, endpoint_url: str | None) -> Any:
    """One client a process and endpoint: a step is followed every few seconds."""
    import boto3

    return boto3.client(service, region_name=region, endpoint_url=endpoint_url)


def _explained(action: str, error: Exception, advice: str = "") -> StackmagicError:
    """One line for an AWS error: what failed, AWS's own words, and what to do."""
    detail = (getattr(error, "response", None) or {}).get("Error", {})
    words = f"{detail.get('Code')}: {detail.get('Message')}" if detail else str(error)
    return StackmagicError(f"cannot {action}: {words}" + (f"; {advice}" if advice else ""))


def _error_code(error: Exception) -> str:
    code: str = (getattr(error, "response", None) or {}).get("Error", {}).get("Code", "")
    return code


def container_command(command: list[str]) -> tuple[list[str], list[str]]:
    """``command`` as ContainerEntrypoint and ContainerArguments: its last word, which may be
    longer than SageMaker takes, in pieces that the entrypoint joins back together."""
    *words, last = command
    script = f'exec {shlex.join(words)} "$(printf %s "$@")"'
    pieces = [last[i : i + ARGUMENT_LENGTH] for i in range(0, len(last), ARGUMENT_LENGTH)]
    if len(pieces) > ARGUMENTS:
        raise StackmagicError(
            f"the job's description is {len(last)} characters, more than SageMaker's "
            f"{ARGUMENTS} container arguments can hold; register fewer store options"
        )
    return ["/bin/sh", "-c", script, "sh"], pieces or [""]


class SageMaker(StepOperator[SageMakerStepOperator]):
    """Training jobs in one region: a step's try, followed and stopped."""

    flavor = "sagemaker"
    secret_manager = "AWS Secrets Manager"

    def _aws(self, service: str) -> Any:
        return _client(service, self.config.region, self.config.endpoint_url or None)

    def check(self, resources: Resources) -> None:
        config = self.config
        if bool(config.subnets) != bool(config.security_groups):
            raise StackmagicError(
                f"step operator {self.name!r}: SageMaker needs both --subnets and "
                "--security-groups for a VPC, or neither"
            )
        if config.max_runtime > LONGEST_RUNTIME:
            raise StackmagicError(
                f"step operator {self.name!r}: --max-runtime={config.max_runtime} is more than "
                f"SageMaker's longest, {LONGEST_RUNTIME} seconds (28 days)"
            )
        if config.spot and config.max_wait and config.max_wait < config.max_runtime:
            raise StackmagicError(
                f"step operator {self.name!r}: --max-wait={config.max_wait} must be at least "
                f"--max-runtime={config.max_runtime} (it counts the waiting and the running)"
            )

    def secret_location(self) -> dict[str, Any]:
        """The secret's name, and where Secrets Manager is for the job (the endpoint it
        reaches SageMaker through, when one is given)."""
        if not self.config.store_secret:
            return {}
        endpoint = {"endpoint_url": self.config.endpoint_url} if self.config.endpoint_url else {}
        return {"name": self.config.store_secret, "region": self.config.region, **endpoint}

    def request(
        self, job: OperatorJob, resources: Resources, *, look_up: bool = True
    ) -> dict[str, Any]:
        """The CreateTrainingJob request; SageMaker is asked nothing to make it."""
        config = self.config
        instance_type = choose(
            CATALOG, resources, config.instance_type, step=job.step, option="--instance-type"
        )
        entrypoint, arguments = container_command(job.command())
        stopping: dict[str, int] = {"MaxRuntimeInSeconds": config.max_runtime}
        if config.spot:
            stopping["MaxWaitTimeInSeconds"] = config.max_wait or 2 * config.max_runtime
        tags = {**config.tags, RUN_TAG: job.run_id, STEP_TAG: job.step, TRY_TAG: str(job.attempt)}
        request: dict[str, Any] = {
            "TrainingJobName": job.name(),
            "RoleArn": config.role,
            "AlgorithmSpecification": {
                "TrainingImage": resources.image,
                "TrainingInputMode": "File",
                "ContainerEntrypoint": entrypoint,
                "ContainerArguments": arguments,
            },
            "ResourceConfig": {
                "InstanceType": instance_type,
                "InstanceCount": config.instance_count,
                "VolumeSizeInGB": config.volume_size_gb,
            },
            "StoppingCondition": stopping,
            "EnableManagedSpotTraining": config.spot,
            "OutputDataConfig": {"S3OutputPath": self._output_path(job)},
            # the step's lines reach CloudWatch as they are printed, not when a buffer fills
            "Environment": {"PYTHONUNBUFFERED": "1"},
            "Tags": [{"Key": key, "Value": str(value)} for key, value in tags.items()],
        }
        if config.subnets:
            request["VpcConfig"] = {
                "Subnets": list(config.subnets),
                "SecurityGroupIds": list(config.security_groups),
            }
        return request

    def _output_path(self, job: OperatorJob) -> str:
        """--output-path, else a folder ``sagemaker`` in the artifact store's bucket."""
        if self.config.output_path:
            return self.config.output_path
        store = job.stores.get("artifact-store", {})
        path = str(store.get("options", {}).get("path", ""))
        if store.get("flavor") == "s3" and path.startswith("s3://"):
            return f"{path.rstrip('/')}/sagemaker"
        raise StackmagicError(
            f"step operator {self.name!r} needs an s3:// folder for SageMaker's output, and the "
            "stack's artifact store is no S3 bucket: give one with --output-path"
        )

    def submit(self, job: OperatorJob, request: dict[str, Any]) -> tuple[str, str]:
        name = request["TrainingJobName"]
        try:
            self._aws("sagemaker").create_training_job(**request)
        except Exception as error:
            raise _explained(
                f"submit the SageMaker training job {name}",
                error,
                "check --role, --image, --instance-type and the AWS credentials",
            ) from None
        region = self.config.region
        return name, (
            f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/jobs/{name}"
        )

    def state(self, job_id: str) -> JobState:
        try:
            job = self._aws("sagemaker").describe_training_job(TrainingJobName=job_id)
        except Exception as error:
            raise _explained(
                f"ask SageMaker about the training job {job_id}",
                error,
                "check the AWS credentials and --region",
            ) from None
        status, secondary = job["TrainingJobStatus"], job.get("SecondaryStatus", "")
        transitions = job.get("SecondaryStatusTransitions") or [{}]
        reason = job.get("FailureReason") or transitions[-1].get("StatusMessage") or secondary
        if status == "InProgress":
            return JobState(
                PENDING if secondary in ("Starting", "Pending", "Downloading") else RUNNING
            )
        if status == "Stopping":  # its container may still run: not ended yet
            return JobState(RUNNING, reason)
        if status == "Completed":
            return JobState(SUCCEEDED)
        interrupted = secondary in ("Interrupted", "MaxWaitTimeExceeded") or (
            status == "Failed" and any(word in reason.lower() for word in _SPOT_WORDS)
        )
        if interrupted:
            return JobState(FAILED, reason, interrupted=True)
        return JobState(FAILED if status == "Failed" else STOPPED, reason)

    def logs(self, job_id: str, cursor: Any) -> tuple[list[str], Any]:
        """The lines of the job's streams (``NAME/algo-1-...``, one an instance); ``cursor``
        holds each stream's next token."""
        tokens: dict[str, str] = dict(cursor or {})
        cloudwatch = self._aws("logs")
        try:
            streams = cloudwatch.describe_log_streams(
                logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job_id}/"
            )["logStreams"]
        except Exception as error:
            if _error_code(error) == "ResourceNotFoundException":
                return [], tokens  # no instance has written yet
            raise _explained(f"read the log of the training job {job_id}", error) from None
        lines: list[str] = []
        for stream in sorted(s["logStreamName"] for s in streams):
            try:
                lines += self._stream_lines(cloudwatch, stream, tokens)
            except Exception as error:
                raise _explained(f"read the log stream {stream}", error) from None
        return lines, tokens

    @staticmethod
    def _stream_lines(cloudwatch: Any, stream: str, tokens: dict[str, str]) -> list[str]:
        """The stream's events since its token, page by page; the token moved on."""
        lines: list[str] = []
        while True:
            since = {"nextToken": tokens[stream]} if stream in tokens else {}
            page = cloudwatch.get_log_events(
                logGroupName=LOG_GROUP, logStreamName=stream, startFromHead=True, **since
            )
            tokens[stream] = page["nextForwardToken"]
            if not page["events"]:
                return lines
            lines += [event["message"].rstrip("\n") for event in page["events"]]

    def stop(self, job_id: str) -> None:
        try:
            self._aws("sagemaker").stop_training_job(TrainingJobName=job_id)
        except Exception as error:
            if _error_code(error) == "ValidationException" and self.state(job_id).phase in ENDED:
                return  # it ended before it could be stopped
            raise _explained(f"stop the SageMaker training job {job_id}", error) from None

    @staticmethod
    def read_secret(location: Mapping[str, Any]) -> str:
        """The secret's text, read with the job role's rights."""
        secrets = _client(
            "secretsmanager", location.get("region") or "us-east-1", location.get("endpoint_url")
        )
        try:
            text: str = secrets.get_secret_value(SecretId=location["name"])["SecretString"]
        except Exception as error:
            raise _explained(
                f"read the secret {location['name']!r} from Secrets Manager",
                error,
                "check that the job's role may read it (secretsmanager:GetSecretValue)",
            ) from None
        return text


BACKEND = SageMaker
