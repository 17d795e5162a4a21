"""The sagemaker step operator: a step as a training job, its request, state, log, stop, secret.

Real: boto3, and moto for SageMaker, CloudWatch Logs and Secrets Manager on
127.0.0.1; MariaDB and the S3 emulator for the team's stores. moto, with what
its SageMaker lacks added here (tests/moto_sagemaker.py, whose FAKE parts its
docstring names): CreateTrainingJob checked against SageMaker's API model,
the job's container command run in a sandbox as SageMaker runs it (its lines
copied to CloudWatch Logs, its end the job's status), StopTrainingJob, and
jobs made to fail before they start or to lose their spot instances.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, started_run, wait_for
from moto_sagemaker import (
    INTERRUPTED,
    PULL_FAILURE,
    REGION,
    SECRET_NAME,
    MotoSageMaker,
    aws,
    moto_sagemaker,
)
from operator_pipeline import (
    EXPECTED_WEIGHTS,
    STORE_SECRETS,
    described,
    evaluated_summary,
    operator_notebook,
    register_operator_stack,
    step_of,
)
from services import DB_CANARY, S3_CANARY, Database

from notebooks import write_notebook
from stackmagic.errors import StackmagicError
from stackmagic.flavors.step_operators import SageMakerStepOperator
from stackmagic.operators.base import (
    FAILED,
    PENDING,
    RUNNING,
    STOPPED,
    OperatorJob,
    Resources,
)
from stackmagic.operators.sagemaker import SageMaker, container_command
from stackmagic.stores.artifacts import ArtifactStore

__all__ = ["aws", "moto_sagemaker"]  # fixtures, used by name

ROLE = "arn:aws:iam::123456789012:role/trainer"
IMAGE = "stackmagic/train:1"
#: a stack's stores as a job gets them: secrets as references only
STORES = {
    "stack": "team",
    "artifact-store": {"name": "bucket", "flavor": "s3", "options": {"path": "s3://team/runs/"}},
    "metadata-store": {
        "name": "db",
        "flavor": "mysql",
        "options": {"password": "env:STACKMAGIC_METADATA_STORE_PASSWORD"},
    },
}


def operator_options(aws: MotoSageMaker, **more: str) -> dict[str, str]:
    """The step operator's options: spot jobs on the emulator, the stores' secret by name."""
    return {
        "role": ROLE,
        "endpoint_url": aws.url,
        "image": IMAGE,
        "store_secret": SECRET_NAME,
        "spot": "true",
        "poll_seconds": "0.2",
        "tags": "team=ml",
        **more,
    }


def backend(aws: MotoSageMaker, **options: str) -> SageMaker:
    config = SageMakerStepOperator.from_options(operator_options(aws, **options), Path.cwd())
    assert isinstance(config, SageMakerStepOperator)
    return SageMaker("gpu", config, lambda option: pytest.fail(f"no secret option: {option}"))


def a_job(operator: SageMaker, run_id: str) -> OperatorJob:
    return OperatorJob(
        run_id=run_id,
        step="train",
        attempt=1,
        will_retry=False,
        stores=STORES,
        flavor="sagemaker",
        secret=operator.secret_location(),
    )


def asking(cpu: str = "", memory: str = "", gpu: int = 0) -> Resources:
    return Resources.from_settings({"cpu": cpu, "memory": memory, "gpu": gpu}, IMAGE)


# --- the request --------------------------------------------------------------------------


def test_the_request_carries_the_image_command_instance_spot_vpc_and_tags_and_no_secret(
    aws: MotoSageMaker,
) -> None:
    operator = backend(aws, subnets="subnet-1,subnet-2", security_groups="sg-1", max_runtime="600")
    job = a_job(operator, "req1")
    request = operator.request(job, asking("4", "16G"))

    algorithm = request["AlgorithmSpecification"]
    assert algorithm["TrainingImage"] == IMAGE and algorithm["TrainingInputMode"] == "File"
    shell, flag, script, zero = algorithm["ContainerEntrypoint"]
    echoed = script.replace("exec ", "exec echo ", 1)  # the command it runs, shown
    ran = subprocess.run(
        [shell, flag, echoed, zero, *algorithm["ContainerArguments"]],
        capture_output=True,
        text=True,
        check=True,
    )
    *command, description = ran.stdout.split()
    assert command == ["python", "-m", "stackmagic.runtime", "job"]
    assert OperatorJob.decode(description) == job, "the arguments are the job's, in pieces"
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.m5.xlarge",  # 4 vCPUs, 16 GiB: the cheapest that fits
        "InstanceCount": 1,
        "VolumeSizeInGB": 30,
    }
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 600,
        "MaxWaitTimeInSeconds": 1200,
    }
    assert request["EnableManagedSpotTraining"] is True
    assert request["VpcConfig"] == {
        "Subnets": ["subnet-1", "subnet-2"],
        "SecurityGroupIds": ["sg-1"],
    }
    assert {tag["Key"]: tag["Value"] for tag in request["Tags"]} == {
        "team": "ml",
        "stackmagic-run": "req1",
        "stackmagic-step": "train",
        "stackmagic-try": "1",
    }
    assert request["OutputDataConfig"] == {"S3OutputPath": "s3://team/runs/sagemaker"}
    assert request["RoleArn"] == ROLE and request["TrainingJobName"] == "sm-train-req1-try1"
    assert job.secret == {"name": SECRET_NAME, "region": REGION, "endpoint_url": aws.url}

    aws.outcomes.append(PULL_FAILURE)  # the request is the point here, not the run
    job_id, url = operator.submit(job, request)
    assert url == (
        f"https://{REGION}.console.aws.amazon.com/sagemaker/home?region={REGION}#/jobs/{job_id}"
    )
    assert aws.created[-1] == request, "SageMaker took the request as made"
    assert ("SageMaker.CreateTrainingJob", json.dumps(request)) in aws.traffic
    assert DB_CANARY not in aws.sent() and S3_CANARY not in aws.sent()


def test_the_instance_type_fits_the_step_and_a_pinned_one_too_small_is_refused(
    aws: MotoSageMaker,
) -> None:
    operator, job = backend(aws), a_job(backend(aws), "fit1")
    chosen = operator.request(job, asking(gpu=1))["ResourceConfig"]["InstanceType"]
    assert chosen == "ml.g4dn.xlarge"
    chosen = operator.request(job, asking("8", "64G"))["ResourceConfig"]["InstanceType"]
    assert chosen == "ml.m5.4xlarge"

    with pytest.raises(StackmagicError) as refused:
        backend(aws, instance_type="ml.m5.large").request(job, asking("4", "16G"))
    assert str(refused.value) == (
        "step 'train' asks for --cpu 4 --memory 16G, more than --instance-type=ml.m5.large has "
        "(2 CPUs, 8 GiB, 0 GPUs); types that fit: ml.m5.xlarge, ml.c5.2xlarge, ml.m5.2xlarge, "
        "ml.c5.4xlarge, ml.m5.4xlarge, ml.c5.9xlarge, ml.m5.12xlarge, ml.c5.18xlarge ... "
        "(give one with --instance-type)"
    )


def test_sagemakers_refusals_come_back_in_one_line(aws: MotoSageMaker) -> None:
    operator = backend(aws, instance_type="ml.m5.huge")
    job = a_job(operator, "bad1")
    with pytest.raises(StackmagicError) as refused:
        operator.submit(job, operator.request(job, asking()))
    assert str(refused.value).startswith(
        "cannot submit the SageMaker training job sm-train-bad1-try1: ValidationException: "
        "Value 'ml.m5.huge' at 'request.ResourceConfig.InstanceType'"
    )
    assert str(refused.value).endswith(
        "check --role, --image, --instance-type and the AWS credentials"
    )

    with pytest.raises(StackmagicError, match="^step operator 'gpu': --max-wait=100 must be at"):
        backend(aws, max_wait="100", max_runtime="600").check(asking())
    with pytest.raises(StackmagicError, match="needs both --subnets and --security-groups"):
        backend(aws, subnets="subnet-1").check(asking())
    no_s3 = OperatorJob(**{**a_job(operator, "gcs1").__dict__, "stores": {"artifact-store": {}}})
    with pytest.raises(StackmagicError, match="no S3 bucket: give one with --output-path$"):
        backend(aws).request(no_s3, asking())
    given = backend(aws, output_path="s3://elsewhere/out").request(no_s3, asking())
    assert given["OutputDataConfig"] == {"S3OutputPath": "s3://elsewhere/out"}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda r: r.pop("OutputDataConfig"), "request.OutputDataConfig: required"),
        (lambda r: r["ResourceConfig"].update(InstanceType="m5.large"), "InstanceType"),
        (lambda r: r["StoppingCondition"].update(MaxWaitTimeInSeconds=60), "at least"),
        (
            lambda r: r["AlgorithmSpecification"].update(ContainerArguments=["x" * 257]),
            "ContainerArguments.1: 257",
        ),
        (lambda r: r.update(TrainingJobName="sm_train"), "TrainingJobName"),
    ],
)
def test_the_emulated_sagemaker_refuses_what_sagemaker_refuses(
    aws: MotoSageMaker, change: Callable[[dict[str, Any]], Any], complaint: str
) -> None:
    """The FAKE's own strictness, past botocore's checks: else it would prove nothing."""
    import boto3
    from botocore.config import Config  # type: ignore[import-untyped]

    operator = backend(aws)
    request = operator.request(a_job(operator, "strict"), asking())
    change(request)
    unchecked = boto3.client(
        "sagemaker",
        region_name=REGION,
        endpoint_url=aws.url,
        config=Config(parameter_validation=False),
    )
    with pytest.raises(unchecked.exceptions.ClientError, match=complaint):
        unchecked.create_training_job(**request)


# --- a job followed: state, log, stop, secret ----------------------------------------------


def submitted(aws: MotoSageMaker, run_id: str, script: str) -> tuple[SageMaker, str]:
    """A job whose container runs ``script`` instead of a step: the backend's request
    otherwise."""
    operator = backend(aws)
    job = a_job(operator, run_id)
    request = operator.request(job, asking())
    request["AlgorithmSpecification"].update(
        ContainerEntrypoint=["/bin/sh", "-c", script], ContainerArguments=["-"]
    )
    job_id, _ = operator.submit(job, request)
    return operator, job_id


def test_a_jobs_state_and_log_lines_follow_it_to_its_failure(aws: MotoSageMaker) -> None:
    operator, job_id = submitted(aws, "log1", "echo one; sleep 0.5; echo two; exit 3")
    assert operator.state(job_id).phase in (PENDING, RUNNING)
    lines, cursor = operator.logs(job_id, None)
    seen = list(lines)

    def ended() -> bool:
        nonlocal cursor
        more, cursor = operator.logs(job_id, cursor)
        seen.extend(more)
        return operator.state(job_id).phase == FAILED

    wait_for(ended, timeout=20, what="the job's end")
    more, cursor = operator.logs(job_id, cursor)
    assert seen + more == ["one", "two"], "each line once, in order"
    assert operator.state(job_id).reason == "AlgorithmError: the container exited with status 3"
    assert not operator.state(job_id).interrupted
    assert operator.logs("sm-never-ran", None) == ([], {}), "no log yet is no error"


def test_a_stopped_job_is_stopped_and_its_container_ends(aws: MotoSageMaker) -> None:
    operator, job_id = submitted(aws, "stop1", "echo started; sleep 60")
    wait_for(lambda: "started" in operator.logs(job_id, None)[0], timeout=20, what="start")

    operator.stop(job_id)

    assert aws.stopped[-1] == job_id, "StopTrainingJob was asked"
    wait_for(lambda: operator.state(job_id).phase == STOPPED, timeout=20, what="the stop")
    sandbox = aws.containers[job_id].sandbox
    assert sandbox is not None and sandbox.exit_code is not None, "the container was killed"
    operator.stop(job_id)  # ended already: nothing to do, no error


def test_lost_spot_instances_and_an_image_that_cannot_be_pulled_end_the_job(
    aws: MotoSageMaker,
) -> None:
    aws.outcomes.extend([INTERRUPTED, PULL_FAILURE])
    operator, interrupted = submitted(aws, "spot1", "exit 0")
    _, unpulled = submitted(aws, "pull1", "exit 0")
    state = wait_for(lambda: (s := operator.state(interrupted)).phase != PENDING and s)
    assert (state.phase, state.interrupted) == (FAILED, True)
    assert "interrupted" in state.reason
    state = wait_for(lambda: (s := operator.state(unpulled)).phase != PENDING and s)
    assert (state.phase, state.interrupted) == (FAILED, False)
    assert state.reason == f"ClientError: Cannot pull the training image {IMAGE}: manifest unknown"


def test_the_job_reads_the_stores_secrets_with_its_own_credentials(aws: MotoSageMaker) -> None:
    location = backend(aws).secret_location()
    assert json.loads(SageMaker.read_secret(location)) == STORE_SECRETS
    with pytest.raises(StackmagicError) as refused:
        SageMaker.read_secret({**location, "name": "stackmagic/none"})
    assert str(refused.value).startswith(
        "cannot read the secret 'stackmagic/none' from Secrets Manager: ResourceNotFoundException"
    )


def test_the_container_command_joins_its_pieces_into_the_last_word() -> None:
    last = "A" * 300 + "B" * 300 + "C"
    entrypoint, arguments = container_command(["echo", "job", last])
    assert all(len(piece) <= 256 for piece in [*entrypoint, *arguments])
    ran = subprocess.run([*entrypoint, *arguments], capture_output=True, text=True, check=True)
    assert ran.stdout == f"job {last}\n"


# --- a pipeline whose train step runs as a training job ------------------------------------


@pytest.fixture
def sagemaker_stack(
    aws: MotoSageMaker,
    terminal: Callable[..., Result],
    team_database: Database,
    request: pytest.FixtureRequest,
) -> ArtifactStore:
    """The team stack with step operator ``gpu``: SageMaker (the emulator), spot jobs; returns
    the bucket's store."""
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in operator_options(aws).items()]
    return register_operator_stack(terminal, team_database, request, ["--type=sagemaker", *flags])


def test_a_step_runs_as_a_training_job_and_a_lost_spot_job_is_tried_again(
    aws: MotoSageMaker,
    sagemaker_stack: ArtifactStore,
    project: Path,
    terminal: Callable[..., Result],
) -> None:
    operator_notebook(project, "--cpu 4 --memory 16G --retries 1")
    aws.outcomes.append(INTERRUPTED)  # the first try's spot instances are taken back

    ran = terminal("pipeline", "run", "operated.ipynb")

    assert ran.code == 0, ran.out + ran.err
    assert evaluated_summary(terminal, sagemaker_stack) == {
        "weights": EXPECTED_WEIGHTS,
        "scale": 2.0,
    }
    run = described(terminal)
    assert [(step["name"], step["status"]) for step in run["steps"]] == [
        ("prepare", "completed"),
        ("train", "completed"),
        ("evaluate", "completed"),
    ]
    first, second = aws.requests_of(run["id"])
    assert first["TrainingJobName"].endswith("-try1") and second["TrainingJobName"].endswith(
        "-try2"
    )
    assert second["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert second["EnableManagedSpotTraining"] is True
    train = step_of(run, "train")
    assert train["job_id"] == second["TrainingJobName"]
    assert train["job_url"] == (
        f"https://{REGION}.console.aws.amazon.com/sagemaker/home?region={REGION}"
        f"#/jobs/{train['job_id']}"
    )
    said = ran.out + ran.err
    assert f"sagemaker job {first['TrainingJobName']} interrupted" in said
    assert "train | training on 1000 rows" in said, "the job's log, in the run's progress"
    assert DB_CANARY not in aws.sent() and S3_CANARY not in aws.sent(), "secrets by name only"
    assert DB_CANARY not in said and S3_CANARY not in said


@pytest.mark.usefixtures("sagemaker_stack")
def test_a_job_that_fails_before_its_step_runs_fails_the_step_with_sagemakers_reason(
    aws: MotoSageMaker, project: Path, terminal: Callable[..., Result]
) -> None:
    operator_notebook(project, "--cpu 4 --memory 16G")
    aws.outcomes.append(PULL_FAILURE)

    ran = terminal("pipeline", "run", "operated.ipynb")

    assert ran.code != 0
    run = described(terminal)
    [job] = aws.requests_of(run["id"])
    name = job["TrainingJobName"]
    url = f"https://{REGION}.console.aws.amazon.com/sagemaker/home?region={REGION}#/jobs/{name}"
    error = (
        f"sagemaker job {name} failed: ClientError: Cannot pull the training image {IMAGE}: "
        f"manifest unknown ({url})"
    )
    assert step_of(run, "train")["status"] == "failed"
    assert step_of(run, "train")["error"] == error
    assert step_of(run, "evaluate")["status"] == "skipped"
    assert error in ran.err


@pytest.mark.usefixtures("sagemaker_stack")
def test_a_cancelled_run_stops_its_training_job(
    aws: MotoSageMaker, project: Path, terminal: Callable[..., Result]
) -> None:
    notebook = write_notebook(
        project / "slow.ipynb",
        "%%step train --operator gpu\nimport time\nprint('waiting', flush=True)\ntime.sleep(120)",
    )
    with started_run(notebook) as driver:
        container = wait_for(
            lambda: next(
                (c for c in aws.containers.values() if c.sandbox and "waiting" in c.sandbox.lines),
                None,
            ),
            timeout=40,
            what="the step running in its job",
        )
        run_id = json.loads(terminal("pipeline", "runs", "--json").out)[0]["id"]

        cancelled = terminal("pipeline", "cancel", run_id)

        assert cancelled.code == 0, cancelled.err
        assert driver.wait(timeout=30) == 1
    assert aws.stopped[-1] == container.name, "StopTrainingJob was asked"
    assert aws.jobs()[container.name].training_job_status == "Stopped"
    assert container.sandbox is not None and container.sandbox.exit_code is not None
    run = described(terminal, run_id)
    assert (run["status"], step_of(run, "train")["status"]) == ("cancelled", "cancelled"), (
        json.dumps(run)
    )
