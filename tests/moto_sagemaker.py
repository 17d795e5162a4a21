"""moto, with what its SageMaker lacks added here: training jobs that run, and StopTrainingJob.

moto serves SageMaker, CloudWatch Logs and Secrets Manager from a
``ThreadedMotoServer`` on 127.0.0.1 in the test process. Its SageMaker stores
any CreateTrainingJob and reports it Completed at once, and has no
StopTrainingJob. The FAKE parts, added to it here:

* CreateTrainingJob is checked as SageMaker checks it: every field against
  SageMaker's own API model (botocore's: required members, types, lengths,
  patterns, enums such as the instance types), and the rules the model cannot
  say (a spot job's MaxWaitTimeInSeconds at least its MaxRuntimeInSeconds and
  only with spot, 28 days at most, a name used once); a refusal is SageMaker's
  ValidationException. The request's Environment, which moto drops, is kept.
* A watcher plays SageMaker's part for each new job: the job is InProgress
  (Starting) from its creation; its container command (ContainerEntrypoint +
  ContainerArguments) runs in a tests/job_sandbox.SandboxJob with the job's
  Environment and the credentials its role would give; the container's lines
  go to CloudWatch Logs (``/aws/sagemaker/TrainingJobs``, stream
  ``NAME/algo-1-TIME``) as SageMaker's agent copies them; its end makes the
  job Completed, or Failed with a FailureReason. ``outcomes`` makes the next
  jobs fail before their container starts (an image that cannot be pulled) or
  lose their spot instances first (Stopped, Interrupted).
* StopTrainingJob: the job is Stopping, its container killed, then Stopped.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from job_sandbox import SandboxJob
from operator_pipeline import STORE_SECRETS

REGION = "us-east-1"
ACCOUNT = "123456789012"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
#: SageMaker's longest MaxRuntimeInSeconds
LONGEST_RUNTIME = 28 * 24 * 3600
#: where the stores' secrets wait, as the operator's --store-secret names them
SECRET_NAME = "stackmagic/team-stores"
TESTING_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

#: what ``outcomes`` can make the next job do, instead of running its container
PULL_FAILURE, INTERRUPTED = "image cannot be pulled", "spot instances taken back"


class Refused(Exception):
    """A request SageMaker would refuse: its message."""


#: the Unicode classes of the model's (Java) patterns, as Python's re says them
_CLASSES = {"\\p{L}": "\\w", "\\p{N}": "\\d", "\\p{Z}": "\\s", "\\p{Alnum}": "\\w"}


def _python_pattern(pattern: str) -> str:
    for java, python in _CLASSES.items():
        pattern = pattern.replace(java, python)
    return pattern


def _check(shape: Any, value: Any, where: str) -> None:
    """``value`` against a shape of botocore's SageMaker model, as the service checks it."""
    kind, limits = shape.type_name, shape.metadata
    expected = {"structure": dict, "map": dict, "list": list, "string": str, "boolean": bool}
    if kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            raise Refused(f"{where}: expected an integer, got {value!r}")
    elif kind in expected and not isinstance(value, expected[kind]):
        raise Refused(f"{where}: expected a {kind}, got {type(value).__name__}")
    size = value if kind == "integer" else len(value) if kind in ("string", "list", "map") else 0
    if "min" in limits and size < limits["min"] or "max" in limits and size > limits["max"]:
        raise Refused(f"{where}: {size} is outside [{limits.get('min')}, {limits.get('max')}]")
    if kind == "string":
        if shape.enum and value not in shape.enum:
            raise Refused(f"Value '{value}' at '{where}' failed to satisfy constraint: enum")
        if "pattern" in limits and not re.fullmatch(_python_pattern(limits["pattern"]), value):
            raise Refused(f"Value '{value}' at '{where}' must match {limits['pattern']}")
    elif kind == "structure":
        for name in shape.required_members:
            if name not in value:
                raise Refused(f"{where}.{name}: required")
        for name, member in value.items():
            if name not in shape.members:
                raise Refused(f"{where}: unknown member {name}")
            _check(shape.members[name], member, f"{where}.{name}")
    elif kind == "list":
        for number, item in enumerate(value):
            _check(shape.member, item, f"{where}.{number + 1}")
    elif kind == "map":
        for key, item in value.items():
            _check(shape.key, key, f"{where} key")
            _check(shape.value, item, f"{where}.{key}")


@functools.cache
def _api_model() -> Any:
    """SageMaker's API model, as botocore has it."""
    import boto3

    return boto3.client("sagemaker", region_name=REGION, **TESTING_KEYS).meta.service_model


def check_training_job(body: dict[str, Any]) -> None:
    """CreateTrainingJob's request, refused where SageMaker refuses it."""
    _check(_api_model().operation_model("CreateTrainingJob").input_shape, body, "request")
    algorithm = body.get("AlgorithmSpecification", {})
    if not algorithm.get("TrainingImage") and not algorithm.get("AlgorithmName"):
        raise Refused("AlgorithmSpecification needs a TrainingImage or an AlgorithmName")
    if "ResourceConfig" not in body or "StoppingCondition" not in body:
        raise Refused("ResourceConfig and StoppingCondition are required for a training job")
    stopping = body["StoppingCondition"]
    if stopping.get("MaxRuntimeInSeconds", 0) > LONGEST_RUNTIME:
        raise Refused("MaxRuntimeInSeconds must be at most 2419200 (28 days)")
    if body.get("EnableManagedSpotTraining"):
        if stopping.get("MaxWaitTimeInSeconds", 0) < stopping.get("MaxRuntimeInSeconds", 86400):
            raise Refused("MaxWaitTimeInSeconds must be at least MaxRuntimeInSeconds for spot")
    elif "MaxWaitTimeInSeconds" in stopping:
        raise Refused("MaxWaitTimeInSeconds is for managed spot training only")


@dataclass
class Container:
    """A training job's container, as it is being played."""

    name: str
    sandbox: SandboxJob | None
    stream: str = ""
    copied: int = 0
    ended: bool = False


@dataclass
class MotoSageMaker:
    url: str
    folder: Path
    #: what the next jobs do instead of running (PULL_FAILURE, INTERRUPTED), first first
    outcomes: deque[str] = field(default_factory=deque)
    #: (X-Amz-Target, body) of each request the server got
    traffic: list[tuple[str, str]] = field(default_factory=list)
    #: CreateTrainingJob requests SageMaker took, and the jobs StopTrainingJob was asked for
    created: list[dict[str, Any]] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    containers: dict[str, Container] = field(default_factory=dict)

    def sent(self) -> str:
        """Every request the server got, but the putting of secrets into Secrets Manager."""
        return "\n".join(body for target, body in self.traffic if not target.startswith("secretsm"))

    def requests_of(self, run_id: str) -> list[dict[str, Any]]:
        """The CreateTrainingJob requests of a run (tagged with it), first try first."""
        tag = {"Key": "stackmagic-run", "Value": run_id}
        return [body for body in self.created if tag in body["Tags"]]

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=REGION, endpoint_url=self.url, **TESTING_KEYS)

    @staticmethod
    def jobs() -> dict[str, Any]:
        """moto's training jobs, by name."""
        from moto.sagemaker.models import sagemaker_backends

        jobs: dict[str, Any] = sagemaker_backends[ACCOUNT][REGION].training_jobs
        return jobs

    def set_status(self, name: str, status: str, secondary: str, message: str = "") -> None:
        from moto.core.utils import utcnow

        job = self.jobs()[name]
        job.training_job_status, job.secondary_status = status, secondary
        job.secondary_status_transitions.append(
            {"Status": secondary, "StartTime": utcnow(), "StatusMessage": message or secondary}
        )
        if status not in ("InProgress", "Stopping"):
            job.training_end_time = utcnow()

    # -- the watcher ----------------------------------------------------------------------

    def watch(self, ended: threading.Event) -> None:
        while not ended.wait(0.1):
            for name, job in list(self.jobs().items()):
                if name not in self.containers:
                    self._start(name, job)
                elif not self.containers[name].ended:
                    self._follow(self.containers[name])

    def _start(self, name: str, job: Any) -> None:
        outcome = self.outcomes.popleft() if self.outcomes else ""
        image = job.algorithm_specification["TrainingImage"]
        if outcome == PULL_FAILURE:
            self.containers[name] = Container(name, None, ended=True)
            job.failure_reason = (
                f"ClientError: Cannot pull the training image {image}: manifest unknown"
            )
            return self.set_status(name, "Failed", "Failed", "Training job failed")
        if outcome == INTERRUPTED and job.enable_managed_spot_training:
            self.containers[name] = Container(name, None, ended=True)
            return self.set_status(
                name, "Stopped", "Interrupted", "The job was interrupted: spot capacity reclaimed"
            )
        algorithm = job.algorithm_specification
        command = [*algorithm["ContainerEntrypoint"], *algorithm.get("ContainerArguments", [])]
        environment = {**job.environment, "TRAINING_JOB_NAME": name}
        sandbox = SandboxJob(command, self.folder / name, environment)
        stream = f"{name}/algo-1-{int(time.time())}"
        logs = self.client("logs")
        try:
            logs.create_log_group(logGroupName=LOG_GROUP)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        self.containers[name] = Container(name, sandbox, stream)
        self.set_status(name, "InProgress", "Training", "Training image download completed.")

    def _follow(self, container: Container) -> None:
        assert container.sandbox is not None
        state = container.sandbox.state()  # before the lines: all read once it has ended
        self._copy_lines(container)
        if state == "running":
            return
        container.ended = True
        if state == "succeeded":
            self.set_status(container.name, "Completed", "Completed")
        elif state == "stopped":
            self.set_status(container.name, "Stopped", "Stopped")
        else:
            job = self.jobs()[container.name]
            job.failure_reason = (
                f"AlgorithmError: the container exited with status {container.sandbox.exit_code}"
            )
            self.set_status(container.name, "Failed", "Failed", "Training job failed")

    def _copy_lines(self, container: Container) -> None:
        assert container.sandbox is not None
        lines = container.sandbox.lines[container.copied :]
        if not lines:
            return
        now = int(time.time() * 1000)
        self.client("logs").put_log_events(
            logGroupName=LOG_GROUP,
            logStreamName=container.stream,
            logEvents=[{"timestamp": now, "message": line} for line in lines],
        )
        container.copied += len(lines)

    # -- what moto's SageMaker does differently or lacks ----------------------------------

    def create_training_job(self, response: Any, create: Any) -> Any:
        from moto.sagemaker.exceptions import AWSValidationException, ResourceInUseException

        body = json.loads(response.body)
        try:
            check_training_job(body)
        except Refused as refusal:
            raise AWSValidationException(str(refusal)) from None
        if body["TrainingJobName"] in self.jobs():
            raise ResourceInUseException(f"Training job {body['TrainingJobName']} exists")
        answer = create(response)
        job = self.jobs()[body["TrainingJobName"]]
        job.environment = body.get("Environment", {})
        job.training_end_time = None  # moto's jobs end as they start; this one has not
        job.model_artifacts = None
        job.final_metric_data_list = None
        self.set_status(body["TrainingJobName"], "InProgress", "Starting", "Launching instances")
        self.created.append(body)
        return answer

    def stop_training_job(self, response: Any) -> Any:
        from moto.core.responses import EmptyResult
        from moto.sagemaker.exceptions import ValidationError

        name = json.loads(response.body).get("TrainingJobName", "")
        job = self.jobs().get(name)
        if job is None:
            raise ValidationError(message=f"Requested resource not found: training job {name}")
        if job.training_job_status != "InProgress":
            raise ValidationError(
                message=f"The training job {name} is {job.training_job_status}, not in progress"
            )
        self.stopped.append(name)
        self.set_status(name, "Stopping", "Stopping")
        container = self.containers.get(name)
        if container and container.sandbox:
            container.sandbox.stop()
        else:
            self.set_status(name, "Stopped", "Stopped")
        return EmptyResult()


@pytest.fixture(scope="module")
def moto_sagemaker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoSageMaker]:
    """moto on 127.0.0.1 in this process, with SageMaker's jobs played as described above."""
    from moto.core.responses import BaseResponse
    from moto.sagemaker.responses import SageMakerResponse
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line a request, else
    server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    fake = MotoSageMaker(f"http://{host}:{port}", tmp_path_factory.mktemp("sagemaker-jobs"))
    create, call_action = SageMakerResponse.create_training_job, BaseResponse.call_action

    def recorded(response: BaseResponse) -> Any:
        body = response.body.decode() if isinstance(response.body, bytes) else response.body
        fake.traffic.append((response.headers.get("X-Amz-Target", ""), body or ""))
        return call_action(response)

    ended = threading.Event()
    watcher = threading.Thread(target=fake.watch, args=(ended,), daemon=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseResponse, "call_action", recorded)
        patch.setattr(
            SageMakerResponse,
            "create_training_job",
            lambda response: fake.create_training_job(response, create),
        )
        patch.setattr(
            SageMakerResponse,
            "stop_training_job",
            lambda response: fake.stop_training_job(response),
            raising=False,
        )
        watcher.start()
        try:
            yield fake
        finally:
            ended.set()
            watcher.join(timeout=5)
            for container in fake.containers.values():
                if container.sandbox:
                    container.sandbox.stop()
            server.stop()


@pytest.fixture
def aws(moto_sagemaker: MotoSageMaker, monkeypatch: pytest.MonkeyPatch) -> MotoSageMaker:
    """The emulator with the stores' secrets in Secrets Manager, and credentials for it only."""
    for variable, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", REGION),
    ):
        monkeypatch.setenv(variable, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    secrets = moto_sagemaker.client("secretsmanager")
    try:
        secrets.create_secret(Name=SECRET_NAME, SecretString=json.dumps(STORE_SECRETS))
    except secrets.exceptions.ResourceExistsException:
        pass
    moto_sagemaker.traffic.clear()
    moto_sagemaker.outcomes.clear()
    return moto_sagemaker
