"""The cloud-VM orchestrators: launch, the startup script run for real, preemption, dry runs.

AWS: the real boto3 against a moto server (EC2, IAM, Secrets Manager). The
startup script an instance gets is then run on this machine in a sandbox (its
direct mode: Python and stackmagic on the "VM image"): a folder of its own,
no stackmagic settings, AWS credentials in the environment as an instance
profile gives them. It fetches the bundle from the S3 emulator, runs the
pipeline against MariaDB, writes its log to the bucket and terminates its own
instance through the EC2 API. Compute Engine (gcp-vm) is in tests/test_gcp_vm.py.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import BIN, Result, wait_for
from services import DB_CANARY, S3_CANARY, Database, S3Server, free_port
from team import bucket_options, register_team_stack, secret_sightings, team_notebook
from vm_sandbox import INSTANCE_IDENTITY, run_startup_script, start_startup_script

from notebooks import write_notebook

REGION = "us-east-1"
SECRET_NAME = "stackmagic/team-stores"
PROFILE = "stackmagic-vm"


@dataclass
class AWS:
    endpoint_url: str
    ec2: Any
    secrets: Any
    ami: str

    def instances(self, run_id: str) -> list[dict[str, Any]]:
        reservations = self.ec2.describe_instances(
            Filters=[{"Name": "tag:stackmagic-run", "Values": [run_id]}]
        )["Reservations"]
        return sorted(
            (i for r in reservations for i in r["Instances"]),
            key=lambda i: int(_tag(i, "stackmagic-try")),
        )

    def user_data(self, instance: dict[str, Any]) -> str:
        answer = self.ec2.describe_instance_attribute(
            InstanceId=instance["InstanceId"], Attribute="userData"
        )
        return base64.b64decode(answer["UserData"]["Value"]).decode()


def _tag(instance: dict[str, Any], key: str) -> str:
    return next(t["Value"] for t in instance.get("Tags", []) if t["Key"] == key)


@pytest.fixture
def aws(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> AWS:
    """moto's EC2 with an instance profile, and credentials that reach nothing but moto."""
    import boto3

    for variable, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", REGION),
    ):
        monkeypatch.setenv(variable, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    endpoint = s3_server.endpoint_url

    def client(service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=endpoint)

    iam = client("iam")
    if not iam.list_instance_profiles()["InstanceProfiles"]:
        iam.create_instance_profile(InstanceProfileName=PROFILE)
    ec2 = client("ec2")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return AWS(endpoint, ec2, client("secretsmanager"), ami)


@pytest.fixture
def vm_stack(
    terminal: Callable[..., Result],
    team_database: Database,
    aws: AWS,
    request: pytest.FixtureRequest,
) -> Callable[..., Any]:
    """``make(*flags)``: the team stack with an aws-vm orchestrator; returns the bucket's store."""

    def make(*flags: str) -> Any:
        _, bucket_flags, store = bucket_options("s3", request)
        secret = {
            "STACKMAGIC_METADATA_STORE_PASSWORD": DB_CANARY,
            "STACKMAGIC_ARTIFACT_STORE_SECRET_ACCESS_KEY": S3_CANARY,
        }
        try:
            aws.secrets.create_secret(Name=SECRET_NAME, SecretString=json.dumps(secret))
        except aws.secrets.exceptions.ResourceExistsException:
            aws.secrets.put_secret_value(SecretId=SECRET_NAME, SecretString=json.dumps(secret))
        register_team_stack(
            terminal,
            team_database,
            bucket_flags,
            orchestrator=[
                "--type=aws-vm",
                f"--endpoint-url={aws.endpoint_url}",
                f"--ami={aws.ami}",
                "--instance-type=c5.2xlarge",
                "--spot=true",
                f"--instance-profile={PROFILE}",
                f"--store-secret={SECRET_NAME}",
                "--tags=team=ml,cost-center=research",
                "--disk-size-gb=50",
                *flags,
            ],
        )
        return store

    return make


#: A step that writes a file and one that reads it: the handoff on the VM.
FILE_STEPS = (
    "%%step extract\nimport os\nos.makedirs('data', exist_ok=True)\n"
    "open('data/part.txt', 'w').write('hello')",
    "%%step use_file\nassert open('data/part.txt').read() == 'hello'",
)


def run_id_of(result: Result) -> str:
    assert result.code == 0, result.err
    return json.loads(result.out)["id"]


def test_a_run_launches_a_spot_instance_whose_startup_script_carries_it_out(
    vm_stack: Callable[..., Any],
    aws: AWS,
    project: Path,
    terminal: Callable[..., Result],
    team_database: Database,
    tmp_path: Path,
) -> None:
    store = vm_stack()
    team_notebook(project, *FILE_STEPS)
    launched = terminal("pipeline", "run", "team.ipynb", "--json")
    run_id = run_id_of(launched)
    assert json.loads(launched.out)["status"] == "running", "the run goes on on the VM"

    [instance] = aws.instances(run_id)
    assert instance["InstanceType"] == "c5.2xlarge" and instance["ImageId"] == aws.ami
    assert instance.get("InstanceLifecycle") == "spot"
    assert instance["IamInstanceProfile"]["Arn"].endswith(f"/{PROFILE}")
    assert (_tag(instance, "team"), _tag(instance, "cost-center")) == ("ml", "research")
    behaviour = aws.ec2.describe_instance_attribute(
        InstanceId=instance["InstanceId"], Attribute="instanceInitiatedShutdownBehavior"
    )
    assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    described = json.loads(terminal("pipeline", "describe", run_id, "--json").out)
    assert described["orchestrator_run_id"] == instance["InstanceId"]

    script = aws.user_data(instance)
    assert script.startswith("#!/bin/bash") and "stackmagic.runtime vm" in script
    launched_as = script + json.dumps(instance, default=str)
    assert DB_CANARY not in launched_as and S3_CANARY not in launched_as, "no secret in the launch"

    vm = run_startup_script(script, tmp_path / "vm")
    assert vm.returncode == 0, vm.stdout[-3000:] + vm.stderr[-3000:]
    assert not (tmp_path / "vm" / "powered-off").exists(), "the runtime ended the VM itself"

    finished = json.loads(terminal("pipeline", "describe", run_id, "--json").out)
    assert finished["status"] == "completed", finished
    assert [(s["name"], s["status"]) for s in finished["steps"]] == [
        ("load", "completed"),
        ("train", "completed"),
        ("report", "completed"),
        ("extract", "completed"),
        ("use_file", "completed"),
    ]
    extract = next(s for s in finished["steps"] if s["name"] == "extract")
    assert store.read_bytes(extract["outputs"]["file:data/part.txt"]["uri"]) == b"hello", (
        "a file a step wrote on the VM is kept in the bucket"
    )
    state = aws.ec2.describe_instances(InstanceIds=[instance["InstanceId"]])
    assert state["Reservations"][0]["Instances"][0]["State"]["Name"] in (
        "shutting-down",
        "terminated",
    )

    logs = terminal("pipeline", "logs", run_id)
    assert logs.code == 0, logs.err
    for line in (
        f"run {run_id}, try 1",
        "train: completed",
        f"run {run_id} completed",
        "deleting this VM",
    ):
        assert line in logs.out, logs.out
    outputs = [launched, logs, Result(vm.returncode, vm.stdout, vm.stderr)]
    assert secret_sightings([DB_CANARY, S3_CANARY], project, store, team_database, outputs) == []


def test_a_preempted_instance_is_replaced_and_finished_steps_come_from_the_cache(
    vm_stack: Callable[..., Any],
    aws: AWS,
    project: Path,
    tmp_path: Path,
    terminal: Callable[..., Result],
) -> None:
    vm_stack("--retries=1")

    def first(run_id: str) -> str:
        [instance] = wait_for(lambda: aws.instances(run_id), what="the first instance")
        return aws.user_data(instance)

    def take_back(run_id: str) -> None:
        [instance] = aws.instances(run_id)[:1]
        aws.ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])

    def second(run_id: str) -> str:
        [instance] = wait_for(lambda: aws.instances(run_id)[1:], timeout=90, what="a new VM")
        assert _tag(instance, "stackmagic-try") == "2"
        return aws.user_data(instance)

    run_taken_back_then_replaced(project, tmp_path, terminal, first, take_back, second)


def run_taken_back_then_replaced(
    project: Path,
    tmp_path: Path,
    terminal: Callable[..., Result],
    first_script: Callable[[str], str],
    take_back: Callable[[str], None],
    second_script: Callable[[str], str],
    identity: Mapping[str, str] = INSTANCE_IDENTITY,
) -> str:
    """``pipeline run --wait`` of three steps on a stack with --retries=1, whose first VM
    finishes the first step and is then taken back by its cloud; the second VM must finish
    the run without running that step again. The run's id.

    Each cloud's test tells how its VMs' scripts are found (``first_script`` and
    ``second_script`` wait for the VM of that try) and how its cloud takes a VM back."""
    write_notebook(
        project / "team.ipynb",
        "%%step load\nfeatures = list(range(100))",
        "%%step nap\nimport time\ntime.sleep(8)\ntotal = sum(features)",
        "%%step report\nsummary = {'total': total}",
    )
    follower = subprocess.Popen(
        [str(BIN / "stackmagic"), "pipeline", "run", "team.ipynb", "--wait", "--progress=lines"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        runs = wait_for(
            lambda: json.loads(terminal("pipeline", "runs", "--json").out), what="the run's record"
        )
        run_id = runs[0]["id"]
        taken_back = start_startup_script(first_script(run_id), tmp_path / "vm-1", identity)
        wait_for(
            lambda: step_status(terminal, run_id, "load") == "completed",
            timeout=120,
            what="the first step on the first VM",
        )
        load_on_first = step_record(terminal, run_id, "load")
        os.killpg(taken_back.pid, signal.SIGKILL)
        taken_back.wait()
        take_back(run_id)
        again = run_startup_script(second_script(run_id), tmp_path / "vm-2", identity)
        assert again.returncode == 0, again.stderr[-2000:]
        output, _ = follower.communicate(timeout=120)
    finally:
        if follower.poll() is None:
            follower.kill()
        if follower.stdout and not follower.stdout.closed:
            print("the follower said:", follower.communicate()[0])
    assert follower.returncode == 0, output
    assert "starting try 2 of 2 on a new VM" in output and "vm | " in output, output
    run = json.loads(terminal("pipeline", "describe", run_id, "--json").out)
    assert run["status"] == "completed", run
    steps = {s["name"]: s for s in run["steps"]}
    assert list(steps) == ["load", "nap", "report"]
    assert all(s["status"] == "completed" for s in steps.values()), steps
    assert steps["load"] == load_on_first, "the step the first VM finished was not run again"
    return run_id


def test_a_preempted_instance_without_retries_leaves_a_preempted_run(
    vm_stack: Callable[..., Any],
    aws: AWS,
    project: Path,
    terminal: Callable[..., Result],
) -> None:
    vm_stack()
    team_notebook(project)
    run_id = run_id_of(terminal("pipeline", "run", "team.ipynb", "--json"))
    [instance] = aws.instances(run_id)
    aws.ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    described = json.loads(terminal("pipeline", "describe", run_id, "--json").out)
    assert described["status"] == "preempted", described
    assert f"the VM {instance['InstanceId']} ended before the run did" in described["error"]
    listed = terminal("pipeline", "runs")
    assert "preempted" in listed.out


def step_record(terminal: Callable[..., Result], run_id: str, step: str) -> dict[str, Any]:
    run = json.loads(terminal("pipeline", "describe", run_id, "--json").out)
    return next(s for s in run["steps"] if s["name"] == step)


def step_status(terminal: Callable[..., Result], run_id: str, step: str) -> str:
    return step_record(terminal, run_id, step)["status"]


def test_a_launch_the_stack_cannot_make_is_refused_in_one_line_before_anything_starts(
    vm_stack: Callable[..., Any],
    aws: AWS,
    project: Path,
    terminal: Callable[..., Result],
) -> None:
    vm_stack()
    team_notebook(project)

    def stackmagic_instances() -> int:
        return sum(
            len(r["Instances"])
            for r in aws.ec2.describe_instances(
                Filters=[{"Name": "tag-key", "Values": ["stackmagic-run"]}]
            )["Reservations"]
        )

    before = stackmagic_instances()
    for change, message in (
        (
            ["--store-secret="],
            "which reach the VM from AWS Secrets Manager, never from its startup script",
        ),
        (["--ami="], "the aws-vm orchestrator needs --image (a container image with stackmagic"),
    ):
        assert terminal("orchestrator", "update", "kf", *change).code == 0
        refused = terminal("pipeline", "run", "team.ipynb")
        assert refused.code == 2 and message in refused.err, refused.err
        assert len(refused.err.strip().splitlines()) == 1
        assert json.loads(terminal("pipeline", "runs", "--json").out) == [], "nothing recorded"
        assert stackmagic_instances() == before, "nothing started"
        assert (
            terminal(
                "orchestrator", "update", "kf", f"--store-secret={SECRET_NAME}", f"--ami={aws.ami}"
            ).code
            == 0
        )


def test_a_dry_run_needs_neither_the_database_nor_the_bucket(
    project: Path,
    terminal: Callable[..., Result],
) -> None:
    """The launch is made from the stack's options: no MySQL server, no S3 endpoint answers here."""
    nobody = f"http://127.0.0.1:{free_port()}"
    for words in (
        ["init"],
        [
            "metadata-store",
            "register",
            "team-db",
            "--type=mysql",
            "--host=127.0.0.1",
            f"--port={free_port()}",
            "--username=ml",
            "--password=env:TEAM_DB_PASSWORD",
            "--database=ml",
        ],
        [
            "artifact-store",
            "register",
            "bucket",
            "--type=s3",
            "--path=s3://team-bucket/pipelines",
            f"--endpoint-url={nobody}",
        ],
        [
            "orchestrator",
            "register",
            "vm",
            "--type=aws-vm",
            f"--endpoint-url={nobody}",
            "--image=registry.example/team:1",
            f"--store-secret={SECRET_NAME}",
        ],
        ["stack", "register", "cloud", "-m", "team-db", "-a", "bucket", "-o", "vm"],
        ["stack", "set", "cloud"],
    ):
        registered = terminal(*words)
        assert registered.code == 0, registered.err
    team_notebook(project)
    unreachable = terminal("pipeline", "runs", env={"TEAM_DB_PASSWORD": "not-needed-below"})
    assert unreachable.code == 2 and "check that the server is running" in unreachable.err

    # the password's variable is not even set: the launch names it, the VM reads the secret;
    # and the MySQL driver is not even importable
    no_driver = project.parent / "no-driver" / "pymysql"
    no_driver.mkdir(parents=True)
    (no_driver / "__init__.py").write_text("raise ImportError('pymysql is not installed here')\n")
    without_driver = {"PYTHONPATH": str(no_driver.parent)}
    needs_it = terminal("pipeline", "runs", env={**without_driver, "TEAM_DB_PASSWORD": "x"})
    assert needs_it.code == 2 and "pymysql" in needs_it.err, needs_it.err
    shown = terminal("pipeline", "run", "team.ipynb", "--dry-run", env=without_driver)
    assert shown.code == 0, shown.err
    assert "Dry run: aws-vm would start this VM for the pipeline team" in shown.out
    assert '"InstanceType": "m5.xlarge"' in shown.out and "#!/bin/bash" in shown.out
    assert (
        "docker run --rm --network=host registry.example/team:1 python3 -m stackmagic.runtime vm"
        in shown.out
    )
    both = terminal("pipeline", "run", "team.ipynb", "--dry-run", "--wait")
    assert both.code == 2 and "--dry-run starts nothing for --wait to follow" in both.err
