"""The README, tried as a newcomer would: every command its code blocks and tables show runs here.

Each test walks sections of README.md in a fresh project, taking the commands
from the README itself (tests/readme.py), so the README cannot drift from what
stackmagic does. The README's example hosts are pointed at this machine's
servers word for word: MariaDB for ``db.internal``, the S3 emulator for AWS
(``AWS_ENDPOINT_URL``), tests/fake_kfp.py (a FAKE KFP API) for the Kubeflow
host. Other programs' commands are carried out by stand-ins named as such;
the few commands nothing here can run are in NOT_RUN, with the reason, and
the last test checks that every block of the README is walked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from importlib.metadata import metadata
from pathlib import Path
from typing import Any

import boto3
import nbformat
import pytest
from conftest import BIN, wait_for
from fake_gce import FakeGce
from fake_http import requests_text, serve
from fake_kfp import FakeKfp
from IPython.core.interactiveshell import InteractiveShell
from nbformat.v4 import new_code_cell, new_notebook
from readme import (
    README,
    Command,
    Walk,
    blocks,
    commands,
    matches_shown,
    section_commands,
    shown_output,
    table_examples,
)
from services import DB_CANARY, Database, S3Server
from vm_sandbox import run_startup_script

ROOT = README.parent
#: Commands the README shows that no test runs, and why.
NOT_RUN = {
    "bash .ci/run": "the CI script, which runs these tests",
    "python -m pytest": "the test command, which runs these tests",
}
BENCHMARKS = "python benchmarks/"  # run by hand: each script must exist
MYSQL_PASSWORD = DB_CANARY
TYPED = {
    "--password": "typed-s3cr3t",
    "--token": "typed-token",
    "--account-key": "dHlwZWQ=",
    "--secret-access-key": "typed-key",
    "--connection-string": "UseDevelopmentStorage=true",
}


def not_run(command: Command) -> bool:
    text = str(command)
    return text.startswith(BENCHMARKS) or any(text.startswith(prefix) for prefix in NOT_RUN)


def check_pip_install(command: Command) -> None:
    """Stands in for `pip install "stackmagic[EXTRAS]"`: the package has each extra named."""
    [requirement] = [word for word in command.words[2:] if word.startswith("stackmagic")]
    wanted = requirement.removeprefix("stackmagic").strip("[]")
    known = set(metadata("stackmagic").get_all("Provides-Extra") or [])
    assert {extra for extra in wanted.split(",") if extra} <= known, (command, known)


def walk_of(
    project: Path, *, stand_ins: dict[str, Callable[[Command], None]] | None = None, **options: Any
) -> Walk:
    """A walk that types TYPED at prompts and checks `pip install` lines rather than installing."""
    return Walk(
        project, answers=TYPED, stand_ins={"pip": check_pip_install, **(stand_ins or {})}, **options
    )


def runnable(section: str) -> list[Command]:
    return [command for command in section_commands(section) if not not_run(command)]


# --- the notebook the README's "Steps" section shows, with the two files beside it -------------

MODEL_PY = '''\
"""The model.py the README's train.ipynb imports (the test's): a line through the points."""
import os


def fit(df, lr, epochs):
    if os.environ.get("FIT_FAILS"):  # stands for a passing fault, which the runtime's `step` retries
        raise MemoryError("the machine ran out of memory")
    slope, intercept = 0.0, 0.0
    for _ in range(epochs):
        error = slope * df.x + intercept - df.y
        slope -= lr * float((error * df.x).mean())
        intercept -= lr * float(error.mean())
    loss = float(((slope * df.x + intercept - df.y) ** 2).mean())
    return {"slope": slope, "intercept": intercept}, loss
'''


#: The Steps section's first python blocks are train.ipynb; the rest, its in-place example.
TRAIN_BLOCKS = 4


def write_readme_notebook(folder: Path) -> Path:
    """train.ipynb, cell for cell from the README, with data.csv and model.py beside it."""
    cells = [
        new_code_cell(block.text.rstrip("\n"))
        for block in blocks("Steps: a notebook as a pipeline", "python")[:TRAIN_BLOCKS]
    ]
    [parameters] = [cell for cell in cells if 'tagged "parameters"' in cell.source]
    parameters.metadata["tags"] = ["parameters"]
    nbformat.write(
        new_notebook(
            cells=cells,
            metadata={
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
            },
        ),
        folder / "train.ipynb",
    )
    (folder / "model.py").write_text(MODEL_PY)
    (folder / "data.csv").write_text(
        "x,y\n" + "".join(f"{x / 10},{2 * x / 10 + 1}\n" for x in range(10))
    )
    return folder / "train.ipynb"


def describe(walk: Walk, run: str = "latest") -> dict[str, Any]:
    return json.loads(walk.run(Command(("stackmagic", "pipeline", "describe", run, "--json"))))


# --- the walks -------------------------------------------------------------------------------


def test_the_install_lines_name_extras_the_package_has(project: Path) -> None:
    found = section_commands("Install")
    assert len(found) >= 7
    for command in found:
        check_pip_install(command)


def test_a_first_session_in_a_terminal(project: Path) -> None:
    walk = walk_of(project)
    walk.run_all(section_commands("A first session"))
    listed = walk.run(Command(("stackmagic", "stack", "list")))
    assert matches_shown(listed, shown_output("A first session", "stackmagic stack list")), listed


def test_a_first_session_in_a_notebook(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [cell] = blocks("A first session", "python")
    monkeypatch.setattr("getpass.getpass", lambda prompt="": TYPED["--password"])
    shell = InteractiveShell.instance()
    try:
        walk_of(project).run(Command(("stackmagic", "init")))
        result = shell.run_cell(cell.text)
        assert result.success, result.error_in_exec or result.error_before_exec
    finally:
        InteractiveShell.clear_instance()
    walk = walk_of(project)
    assert walk.run(Command(("stackmagic", "stack", "get"))).strip() == "gcp"
    described = walk.run(Command(("stackmagic", "metadata-store", "describe", "sql")))
    assert TYPED["--password"] not in described and "********" in described


def test_the_command_reference_examples(project: Path) -> None:
    """Each table's examples in order, on what the README's other sections register and run."""
    write_readme_notebook(project)
    walk = walk_of(project)
    walk.run_all(section_commands("Command reference"))  # stackmagic init
    registrations = [
        c
        for c in section_commands("A first session")
        + section_commands("Cloud VMs: a bigger machine for an hour")
        if c.words[2:3] == ("register",) and c.words[1] != "stack"
    ]
    walk.run_all(registrations)
    printed = {}
    for example in table_examples("Command reference"):
        if example.words[1:3] == ("stack", "delete"):  # a stack is deleted once another is active
            walk.run(Command(("stackmagic", "stack", "set", "default")))
        if example.words[1:3] == ("pipeline", "logs"):  # the latest run is one that left a log
            walk.run_all(commands(blocks("Kubeflow Pipelines", "bash")[1].text))  # kfp.local
        printed[" ".join(example.words[1:3])] = walk.run(example)
    assert "big      gcp-vm" in printed["orchestrator list"]
    assert "--password  env:MYSQL_PASSWORD" in printed["metadata-store describe"]
    assert printed["step-operator flavors"].startswith("Step operator flavors")
    assert "Orchestrator big:" in printed["stack describe"] and printed["stack get"] == "gcp\n"
    assert [stack["name"] for stack in json.loads(printed["stack list"])] == ["default", "gcp"]
    assert "completed" in printed["pipeline run"] and "lr=0.2 (given)" in printed["pipeline run"]
    assert re.search(r"step train:\n  loss  0\.\d+", printed["pipeline load"])
    assert "kfp" in printed["pipeline logs"], printed["pipeline logs"]
    assert json.loads(printed["pipeline schedules"]) == [], "none on the README's stacks"
    assert re.search(r"^FROM ", printed["image dockerfile"], re.MULTILINE), "a Dockerfile, printed"
    stacks = json.loads(walk.run(Command(("stackmagic", "stack", "list", "--json"))))
    assert [stack["name"] for stack in stacks] == ["default", "kfl"], "gcp was deleted"
    assert "gcs" in walk.run(Command(("stackmagic", "artifact-store", "list")))


@pytest.mark.kernel
def test_a_notebook_as_a_pipeline_run_exported_and_run_again(project: Path) -> None:
    """Steps, Running a pipeline and the runtime, in order, on the README's own train.ipynb."""
    write_readme_notebook(project)
    walk = walk_of(project)
    walk.run(Command(("stackmagic", "init")))
    shown = walk.run(Command(("stackmagic", "pipeline", "show", "train.ipynb")))
    assert matches_shown(
        shown,
        shown_output("Steps: a notebook as a pipeline", "stackmagic pipeline show train.ipynb"),
    ), shown

    running, runtime = blocks("Running a pipeline", "bash")
    walk.run_all(commands(running.text))
    run = describe(walk)
    assert run["status"] == "completed" and run["parameters"] == {"lr": 0.1, "epochs": 10}
    train = next(step for step in run["steps"] if step["name"] == "train")
    assert [metric["name"] for metric in train["metrics"]] == ["loss"]
    assert (project / "out" / "manifest.json").is_file() and (project / "Dockerfile").is_file()

    [api] = blocks("Running a pipeline", "python")
    printed = subprocess.run(
        [sys.executable, "-c", api.text], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert printed.returncode == 0, printed.stderr
    status, train_status, loss = printed.stdout.split()
    assert (status, train_status) == ("completed", "completed")
    recorded = next(step for step in describe(walk)["steps"] if step["name"] == "train")
    assert recorded["metrics"] == [{"name": "loss", "value": float(loss)}], "the loss it logged"

    # the runtime: a bundle runs alone; one step of a run whose step failed runs again in place
    failing = Walk(project, environment={"FIT_FAILS": "1"})
    failing.run(
        Command(("stackmagic", "pipeline", "run", "train.ipynb", "--no-cache")), expect_code=1
    )
    failed = describe(walk)
    assert failed["status"] == "failed"
    again_in_place = Walk(project, substitutions={"RUN": failed["id"]})
    again_in_place.run_all(commands(runtime.text))
    again_in_place.assert_no_stale_substitution()
    again = describe(walk, failed["id"])
    assert [step["status"] for step in again["steps"]] == ["completed", "completed"]


@pytest.mark.kernel
def test_the_in_place_example_prints_what_the_notebook_prints(project: Path) -> None:
    """The section's load/convert/total cells: a change in place reaches the next step."""
    example = blocks("Steps: a notebook as a pipeline", "python")[TRAIN_BLOCKS:]
    assert len(example) == 3
    nbformat.write(
        new_notebook(
            cells=[new_code_cell("import pandas as pd")]
            + [new_code_cell(block.text.rstrip("\n")) for block in example]
        ),
        project / "inplace.ipynb",
    )
    walk = walk_of(project)
    walk.run(Command(("stackmagic", "init")))
    shown = walk.run(Command(("stackmagic", "pipeline", "show", "inplace.ipynb")))
    assert "load -> convert  [changes df, items]" in shown, shown
    walk.run(Command(("stackmagic", "pipeline", "run", "inplace.ipynb")))
    total = describe(walk)["steps"][-1]
    executed = nbformat.read(total["notebook"], as_version=4)
    printed = [
        output.get("text", "") for cell in executed.cells for output in cell.get("outputs", [])
    ]
    assert "6 [1, 2, 3]\n" in printed, printed


@pytest.fixture
def team_servers(
    team_database: Database, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """MariaDB for the README's db.internal; the S3 emulator as AWS, with its bucket ml-artifacts."""
    for key, value in {
        "AWS_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "MYSQL_PASSWORD": MYSQL_PASSWORD,
    }.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3")
    if "ml-artifacts" not in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(
            Bucket="ml-artifacts", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
    yield {
        "--host=db.internal": "--host=127.0.0.1",
        "--username=ml": f"--username={team_database.username}",
        "--database=stackmagic": f"--database={team_database.database}",
    }


def team_walk(project: Path, substitutions: dict[str, str], **options: object) -> Walk:
    """The README's team stack, registered and run once, in a project with train.ipynb."""
    write_readme_notebook(project)
    walk = walk_of(project, substitutions=substitutions, **options)
    walk.run(Command(("stackmagic", "init")))
    walk.run_all(commands(blocks("Team stacks: a shared database and a bucket", "bash")[0].text))
    return walk


@pytest.mark.kernel
def test_team_stacks_on_mariadb_and_s3(project: Path, team_servers: dict[str, str]) -> None:
    walk = team_walk(project, team_servers)
    run = describe(walk)
    assert run["status"] == "completed" and run["stack"] == "team"
    stored = boto3.client("s3").list_objects_v2(Bucket="ml-artifacts", Prefix="pipelines/train/")
    assert f"pipelines/train/{run['id']}/train/model.json" in [
        item["Key"] for item in stored["Contents"]
    ]
    assert "slope" in walk.said_by("stackmagic pipeline load"), "pipeline load printed the model"

    (project / "ca.pem").write_text("a CA certificate\n")
    (project / "key.json").write_text("{}\n")
    _, other_stores = blocks("Team stacks: a shared database and a bucket", "bash")
    walk.run_all(commands(other_stores.text))
    walk.assert_no_stale_substitution()
    listed = walk.run(Command(("stackmagic", "artifact-store", "list")))
    assert all(name in listed for name in ("gcs", "blob", "minio", "gcs-emulator", "azurite"))
    assert not any(value in said for value in TYPED.values() for said in walk.said)


@pytest.fixture
def fake_kubeflow() -> Iterator[FakeKfp]:
    """tests/fake_kfp.py, a FAKE KFP API that runs submitted pipelines with kfp.local."""
    yield from serve(FakeKfp(token=TYPED["--token"]))


@pytest.mark.kernel
def test_kubeflow_through_the_kfp_api_and_kfp_local(
    project: Path,
    team_servers: dict[str, str],
    fake_kubeflow: FakeKfp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def kubectl_create_secret(command: Command) -> None:
        """Stands in for `kubectl create secret generic`: the fake's pods get its literals."""
        for word in command.words:
            if word.startswith("--from-literal="):
                key, value = word.removeprefix("--from-literal=").split("=", 1)
                fake_kubeflow.pod_environment[key] = os.path.expandvars(value)

    # the README's bucket takes the AWS credential chain: in a cluster, the pods' own identity
    fake_kubeflow.pod_environment.update(
        {key: os.environ[key] for key in os.environ if key.startswith("AWS_")}
    )
    monkeypatch.setenv("DB_PASSWORD", MYSQL_PASSWORD)  # what the README's kubectl line reads
    monkeypatch.setenv("S3_SECRET", "unused: the README's bucket takes the AWS credential chain")
    walk = team_walk(
        project,
        {
            **team_servers,
            "--host=https://kubeflow.example.com/pipeline": f"--host={fake_kubeflow.url}",
        },
        stand_ins={"kubectl": kubectl_create_secret},
    )
    walk.run_all(runnable("Kubeflow Pipelines"))
    walk.assert_no_stale_substitution()
    wait_for(
        lambda: all(run["state"] != "RUNNING" for run in fake_kubeflow.runs.values()),
        timeout=120,
        what="the end of the run nobody waited for",
    )
    runs = json.loads(walk.run(Command(("stackmagic", "pipeline", "runs", "--json"))))
    assert [run["status"] for run in runs if run["stack"] == "kf"] == ["completed"] * 2, runs
    assert len(fake_kubeflow.runs) == 2 and (project / "pipeline.yaml").is_file()
    local = json.loads(
        walk.run(Command(("stackmagic", "pipeline", "runs", "--stack", "kfl", "--json")))
    )
    assert [(run["stack"], run["status"]) for run in local] == [("kfl", "completed")]

    # Schedules, on the same stacks: a KFP recurring run on kf, made, listed and dropped
    walk.run_all(runnable("Schedules"))
    created = [
        r for r in fake_kubeflow.requests if r.method == "POST" and "/recurringruns" in r.path
    ]
    assert [json.loads(r.body)["trigger"] for r in created] == [
        {"cron_schedule": {"cron": "0 0 3 * * *"}}
    ]
    assert "0 3 * * *" in walk.said_by("stackmagic pipeline schedules")
    assert fake_kubeflow.recurring_runs == {}, "unscheduled"
    # ... and on the local stack, the refusal with its crontab line, as the README shows it
    first, _, shown = blocks("Schedules", "text")[0].text.partition("\n")
    walk.run(Command(tuple(shlex.split(first.removeprefix("$ ")))), expect_code=2)
    here = shown.replace("/home/me/project", str(project))
    assert walk.said[-1] == here.replace("/home/me/.venv/bin/stackmagic", str(BIN / "stackmagic"))


@pytest.mark.kernel
def test_cloud_vms_on_a_fake_compute_engine(
    project: Path, team_servers: dict[str, str], gce: FakeGce, tmp_path: Path
) -> None:
    """The README's gcp-vm against tests/fake_gce.py, a FAKE Compute Engine and Secret Manager.

    The VM's startup script runs here in a sandbox folder, as a VM image with
    Python and stackmagic runs it (Docker does not run here, so the README's
    ``--image`` becomes such a ``--boot-image``).
    """

    def as_typed(secret_json: str) -> str:
        return secret_json.replace('"..."', json.dumps(MYSQL_PASSWORD))  # "..." is yours to type

    def gcloud_secrets_create(command: Command) -> None:
        """Stands in for `gcloud secrets create NAME --data-file=- <<< JSON`, on the fake."""
        data = command.words[command.words.index("<<<") + 1]
        gce.secrets[f"projects/my-project/secrets/{command.words[3]}"] = as_typed(data)

    def aws_create_secret(command: Command) -> None:
        """Stands in for `aws secretsmanager create-secret`: the same call through boto3, on moto."""
        words = command.words
        boto3.client("secretsmanager").create_secret(
            Name=words[words.index("--name") + 1],
            SecretString=as_typed(words[words.index("--secret-string") + 1]),
        )

    key_vault: dict[str, str] = {}

    def az_keyvault_secret_set(command: Command) -> None:
        """Stands in for `az keyvault secret set`: the secret the azure-vm orchestrator's VMs
        read (tests/test_azure_vm.py runs such a VM against a FAKE Key Vault)."""
        words = command.words
        assert words[1:4] == ("keyvault", "secret", "set"), words
        key_vault[words[words.index("--name") + 1]] = as_typed(words[words.index("--value") + 1])

    section = section_commands("Cloud VMs: a bigger machine for an hour")
    walk = team_walk(
        project,
        {
            **team_servers,
            "--store-secret=stackmagic-stores": (
                "--store-secret=stackmagic-stores",
                f"--api-endpoint={gce.url}",
            ),
            "--image=europe-docker.pkg.dev/my-project/ml/team:1": "--boot-image=projects/debian-cloud/global/images/family/debian-12",
        },
        stand_ins={
            "gcloud": gcloud_secrets_create,
            "aws": aws_create_secret,
            "az": az_keyvault_secret_set,
        },
    )
    secrets_first = sorted(
        section, key=lambda command: command.words[0] not in ("gcloud", "aws", "az")
    )
    # the VM's own identity reaches the bucket (the S3 emulator) as the README's credential chain
    identity = {key: value for key, value in os.environ.items() if key.startswith("AWS_")}
    with booting_vms(gce, tmp_path / "vm", identity) as booted:
        walk.run_all(secrets_first)
    walk.assert_no_stale_substitution()
    [vm] = booted
    assert vm.returncode == 0, vm.stdout[-2000:] + vm.stderr[-2000:]
    run = describe(walk)
    assert (run["stack"], run["status"]) == ("cloud", "completed")
    assert gce.deleted == [run["orchestrator_run_id"]], "the VM deleted itself"
    assert "Dry run: gcp-vm would start this VM" in walk.said_by(
        "stackmagic pipeline run train.ipynb --dry-run"
    )
    assert f"Compute Engine VM {run['orchestrator_run_id']}" in walk.said_by(
        "stackmagic pipeline logs"
    )
    assert MYSQL_PASSWORD not in requests_text(gce.requests) and not any(
        MYSQL_PASSWORD in said for said in walk.said
    )
    azure = json.loads(
        walk.run(Command(("stackmagic", "orchestrator", "describe", "big-az", "--json")))
    )
    assert azure["flavor"] == "azure-vm" and azure["options"]["store_secret"] in key_vault
    assert json.loads(key_vault["team-stores"]) == {
        "STACKMAGIC_METADATA_STORE_PASSWORD": MYSQL_PASSWORD
    }


@contextlib.contextmanager
def booting_vms(
    gce: FakeGce,
    folder: Path,
    identity: dict[str, str],
) -> Iterator[list[subprocess.CompletedProcess[str]]]:
    """Boots each VM the fake is asked for: its startup script runs in a sandbox, to its end."""
    booted: list[subprocess.CompletedProcess[str]] = []
    stop = threading.Event()

    def boot() -> None:
        seen: set[str] = set()
        while not stop.is_set():
            for name, instance in list(gce.instances.items()):
                if name not in seen:
                    seen.add(name)
                    [script] = [
                        item["value"]
                        for item in instance["metadata"]["items"]
                        if item["key"] == "startup-script"
                    ]
                    booted.append(run_startup_script(script, folder / name, identity))
            stop.wait(0.3)

    thread = threading.Thread(target=boot, daemon=True)
    thread.start()
    try:
        yield booted
    finally:
        stop.set()
        thread.join(timeout=600)


def test_flavors_secrets_widgets_and_a_custom_flavor(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    walk = walk_of(project, environment={"MYSQL_PASSWORD": MYSQL_PASSWORD})
    walk.run(Command(("stackmagic", "init")))
    flavors = walk.run(Command(("stackmagic", "metadata-store", "flavors")))
    assert matches_shown(
        flavors, shown_output("Flavors and their options", "stackmagic metadata-store flavors")
    ), flavors

    walk.run_all(section_commands("Secrets"))
    assert [
        path
        for path in project.rglob("*")
        if path.is_file()
        and (b"s3cr3t" in path.read_bytes() or TYPED["--password"].encode() in path.read_bytes())
    ] == []
    described = walk.run(Command(("stackmagic", "metadata-store", "describe", "sql")))
    assert "env:MYSQL_PASSWORD" in described, "the last of the three ways is the one kept"

    [widgets] = blocks("Widgets", "python")
    shown = subprocess.run(
        [sys.executable, "-c", widgets.text],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr

    # Writing a flavor: the module and the entry point, as an installed package would have them
    # (its first blocks; the orchestrator's after them: tests/test_custom_orchestrator.py)
    module = blocks("Writing a flavor", "python")[0]
    entry_points = blocks("Writing a flavor", "toml")[0]
    package = tmp_path / "site"
    (package / "hdfs_flavor-1.0.dist-info").mkdir(parents=True)
    (package / "hdfs_flavor.py").write_text(module.text)
    (package / "hdfs_flavor-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: hdfs-flavor\nVersion: 1.0\n"
    )
    tomllib = pytest.importorskip("tomllib", reason="reading TOML needs Python 3.11")
    declared = tomllib.loads(entry_points.text)["project"]["entry-points"]
    (package / "hdfs_flavor-1.0.dist-info" / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in points.items())
            for group, points in declared.items()
        )
    )
    with_flavor = Walk(project, environment={"PYTHONPATH": str(package)})
    listed = with_flavor.run(Command(("stackmagic", "artifact-store", "flavors")))
    assert "hdfs (An HDFS folder" in listed and "--kerberos-ticket" in listed


def walked_in_test_first_screen() -> None:
    """The first screen and the "Development" section: run verbatim in a fresh virtual
    environment by tests/test_first_screen.py."""


def walked_in_test_readme_operators() -> None:
    """The "Step operators" section: each flavor's block is walked on its backend's stand-in by
    a test of its own in tests/test_readme_operators.py (which uses this module's walks)."""


def walked_in_test_readme_vertex() -> None:
    """The "Vertex AI Pipelines" section: walked on the FAKE Vertex AI by
    tests/test_readme_vertex.py (which uses this module's walks)."""


def walked_in_test_readme_trackers() -> None:
    """The "Experiment trackers" section: walked against a real MLflow server by
    tests/test_readme_trackers.py (which uses this module's walks)."""


def walked_in_test_readme_kubernetes() -> None:
    """The "Kubernetes" section: walked on the FAKE Kubernetes API server by
    tests/test_readme_kubernetes.py (which uses this module's walks)."""


def walked_in_test_airflow_server() -> None:
    """The "Airflow" section: walked against a running Airflow by
    tests/test_airflow_server.py (which uses this module's walks)."""


#: Each section with code: the test that walks it, and the blocks it walks there. A new block
#: fails the last test until a walk takes it and its count here is raised.
WALKED: dict[str, tuple[Callable[..., None], dict[str, int]]] = {
    "": (walked_in_test_first_screen, {"bash": 1}),
    "Install": (test_the_install_lines_name_extras_the_package_has, {"bash": 1}),
    "A first session": (test_a_first_session_in_a_terminal, {"bash": 1, "text": 1, "python": 1}),
    "Command reference": (test_the_command_reference_examples, {"bash": 1}),
    # its last three python blocks: test_the_in_place_example_prints_what_the_notebook_prints
    "Steps: a notebook as a pipeline": (
        test_a_notebook_as_a_pipeline_run_exported_and_run_again,
        {"python": 7, "text": 1},
    ),
    # its text block is the shape of a failure's line, not a command's output
    "Running a pipeline": (
        test_a_notebook_as_a_pipeline_run_exported_and_run_again,
        {"bash": 2, "python": 1, "text": 1},
    ),
    "Team stacks: a shared database and a bucket": (
        test_team_stacks_on_mariadb_and_s3,
        {"bash": 2},
    ),
    "Kubeflow Pipelines": (test_kubeflow_through_the_kfp_api_and_kfp_local, {"bash": 2}),
    "Vertex AI Pipelines": (walked_in_test_readme_vertex, {"bash": 1}),
    "Kubernetes": (walked_in_test_readme_kubernetes, {"bash": 2, "yaml": 1}),
    "Airflow": (walked_in_test_airflow_server, {"bash": 1}),
    "Schedules": (test_kubeflow_through_the_kfp_api_and_kfp_local, {"bash": 1, "text": 1}),
    "Cloud VMs: a bigger machine for an hour": (
        test_cloud_vms_on_a_fake_compute_engine,
        {"bash": 2},
    ),
    "Step operators: one step on a GPU job": (
        walked_in_test_readme_operators,
        {"python": 1, "bash": 4},
    ),
    # its text block, a tracker out of reach, is matched against a run's own line there
    "Experiment trackers: every run in MLflow or W&B": (
        walked_in_test_readme_trackers,
        {"bash": 2, "text": 1},
    ),
    "Flavors and their options": (test_flavors_secrets_widgets_and_a_custom_flavor, {"text": 1}),
    "Secrets": (test_flavors_secrets_widgets_and_a_custom_flavor, {"bash": 1}),
    "Widgets": (test_flavors_secrets_widgets_and_a_custom_flavor, {"python": 1}),
    # its second python and toml blocks and its bash block, a custom orchestrator's package:
    # pip-installed and run by tests/test_custom_orchestrator.py
    "Writing a flavor": (
        test_flavors_secrets_widgets_and_a_custom_flavor,
        {"python": 2, "toml": 2, "bash": 1},
    ),
    "Development": (walked_in_test_first_screen, {"bash": 2}),
}


def test_every_block_of_the_readme_is_walked() -> None:
    found: dict[str, dict[str, int]] = {}
    for block in blocks():
        languages = found.setdefault(block.section, {})
        languages[block.language or "plain"] = languages.get(block.language or "plain", 0) + 1
    walked = {section: counts for section, (_, counts) in WALKED.items()}
    assert found == walked, "a block that no test walks (or a walk of a block that is gone)"
    shown = [str(command) for block in blocks(language="bash") for command in commands(block.text)]
    for prefix in NOT_RUN:
        assert any(command.startswith(prefix) for command in shown), f"NOT_RUN: {prefix} is gone"
    for command in shown:
        if command.startswith(BENCHMARKS):
            assert (ROOT / command.split()[1]).is_file(), command
