"""What every step operator shares, before any job starts: which steps go to it, and what
is refused in one line before a run is recorded (each backend's jobs: test_operator_*.py)."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Result
from fake_kubernetes import FakeKubernetes
from operator_pipeline import (
    EXPECTED_WEIGHTS,
    described,
    evaluated_summary,
    operator_notebook,
    register_operator_stack,
    step_of,
)
from services import DB_CANARY, S3_CANARY, Database
from test_operator_kubernetes import (  # noqa: F401 - the fake cluster's fixture
    IMAGE,
    NAMESPACE,
    STORE_SECRET,
    cluster,
    kubeconfig_of,
)
from test_vm import AWS, aws, vm_stack  # noqa: F401 - an aws-vm stack on moto's EC2
from vm_sandbox import run_startup_script

from notebooks import write_notebook
from stackmagic.progress import StepJob, choose
from stackmagic.stores.artifacts import ArtifactStore

#: a Kubernetes step operator: its requests are made without asking the cluster anything
KUBERNETES = ["--type=kubernetes", "--namespace=ml", "--store-secret=team-stores"]


def runs_of(terminal: Callable[..., Result]) -> list[object]:
    listed = terminal("pipeline", "runs", "--json")
    assert listed.code == 0, listed.err
    runs: list[object] = json.loads(listed.out)
    return runs


def test_a_step_naming_an_operator_the_stack_lacks_is_refused_before_anything_runs(
    project: Path, terminal: Callable[..., Result]
) -> None:
    assert terminal("init").code == 0
    operator_notebook(project)
    refused = terminal("pipeline", "run", "operated.ipynb")
    assert refused.code != 0
    [line] = refused.err.strip().splitlines()
    assert (
        "step 'train' runs on step operator 'gpu', but stack 'default' has no step operator" in line
    )
    assert "stackmagic stack update default -s gpu" in line
    assert runs_of(terminal) == [], "nothing was recorded, no step ran"


def test_the_wrong_operator_or_no_image_is_refused_in_one_line(
    project: Path,
    terminal: Callable[..., Result],
    team_database: Database,
    request: pytest.FixtureRequest,
) -> None:
    register_operator_stack(terminal, team_database, request, KUBERNETES)
    write_notebook(project / "other.ipynb", "%%step train --operator big\nx = 1")
    wrong = terminal("pipeline", "run", "other.ipynb")
    assert wrong.code != 0
    assert wrong.err.strip() == (
        "stackmagic: error: step 'train' runs on step operator 'big', but stack 'team' has "
        "'gpu': change the step's --operator, or the stack's (`stackmagic stack update team -s big`)"
    )

    operator_notebook(project)
    imageless = terminal("pipeline", "run", "operated.ipynb")
    assert imageless.code != 0
    [line] = imageless.err.strip().splitlines()
    assert "step 'train' runs on step operator 'gpu', which has no container image" in line
    assert "stackmagic step-operator update gpu --image=IMAGE" in line

    operator_notebook(project, "--image registry.example.com/train:2")
    assert terminal("pipeline", "run", "operated.ipynb", "--dry-run").code == 0, (
        "a step's own --image is enough"
    )
    assert runs_of(terminal) == []


def test_a_dry_run_shows_each_operator_steps_job_request_and_no_secret(
    project: Path,
    terminal: Callable[..., Result],
    team_database: Database,
    request: pytest.FixtureRequest,
) -> None:
    register_operator_stack(
        terminal, team_database, request, [*KUBERNETES, "--image=registry.example.com/train:1"]
    )
    operator_notebook(project, "--cpu 4 --memory 16G --gpu 1")
    shown = terminal("pipeline", "run", "operated.ipynb", "--dry-run", "--json")
    assert shown.code == 0, shown.err
    [(step, job)] = json.loads(shown.out)["requests"].items()
    assert step == "train", "prepare and evaluate run here, not as jobs"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/train:1"
    assert container["command"][:4] == ["python", "-m", "stackmagic.runtime", "job"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["envFrom"] == [{"secretRef": {"name": "team-stores"}}]
    text = terminal("pipeline", "run", "operated.ipynb", "--dry-run")
    assert "train job request" in text.out and "nothing was started or recorded" in text.out
    assert DB_CANARY not in shown.out + text.out and S3_CANARY not in shown.out + text.out
    assert runs_of(terminal) == []


def on_the_cluster(cluster: FakeKubernetes, folder: Path) -> list[str]:
    """A Kubernetes step operator's options for the fake cluster, looked at every 0.2 s."""
    return [
        "--type=kubernetes",
        f"--kubeconfig={kubeconfig_of(cluster, folder)}",
        f"--namespace={NAMESPACE}",
        f"--image={IMAGE}",
        f"--store-secret={STORE_SECRET}",
        "--poll-seconds=0.2",
    ]


def test_under_kubeflow_the_task_hands_its_step_to_the_operator_and_waits_for_the_job(
    cluster: FakeKubernetes,
    project: Path,
    terminal: Callable[..., Result],
    team_database: Database,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """kfp.local runs the compiled pipeline's tasks here; the train task submits a Job to the
    FAKE Kubernetes API server (tests/fake_kubernetes.py), whose pod really runs the step."""
    store = register_operator_stack(
        terminal, team_database, request, on_the_cluster(cluster, tmp_path)
    )
    for words in (
        ["orchestrator", "register", "kfl", "--type=kubeflow", "--mode=local"],
        ["stack", "update", "team", "-o", "kfl"],
    ):
        assert terminal(*words).code == 0
    operator_notebook(project, "--gpu 1")

    result = terminal("pipeline", "run", "operated.ipynb", "--progress", "lines")

    assert result.code == 0, result.err
    assert evaluated_summary(terminal, store) == {"weights": EXPECTED_WEIGHTS, "scale": 2.0}
    run = described(terminal)
    assert [step["status"] for step in run["steps"]] == ["completed"] * 3
    [job] = [pod.job for pod in cluster.pods.values()]
    assert job == step_of(run, "train")["job_id"].split("/")[-1]
    logs = terminal("pipeline", "logs", "latest")
    assert "train | training on 1000 rows" in logs.out, "the task's log follows the job's"


def test_on_a_cloud_vm_the_runtime_hands_its_step_to_the_operator(
    vm_stack: Callable[..., ArtifactStore],
    aws: AWS,
    cluster: FakeKubernetes,
    project: Path,
    terminal: Callable[..., Result],
    tmp_path: Path,
) -> None:
    """The aws-vm run (moto's EC2) whose startup script runs here in a sandbox, as in
    tests/test_vm.py; its train step goes to the FAKE Kubernetes API server's cluster."""
    store = vm_stack()
    for words in (
        ["step-operator", "register", "gpu", *on_the_cluster(cluster, tmp_path)],
        ["stack", "update", "team", "-s", "gpu"],
    ):
        assert terminal(*words).code == 0
    operator_notebook(project, "--memory 8Gi")
    launched = terminal("pipeline", "run", "operated.ipynb", "--json")
    assert launched.code == 0, launched.err
    [instance] = aws.instances(json.loads(launched.out)["id"])

    vm = run_startup_script(aws.user_data(instance), tmp_path / "vm")

    assert vm.returncode == 0, vm.stdout[-3000:] + vm.stderr[-3000:]
    assert evaluated_summary(terminal, store) == {"weights": EXPECTED_WEIGHTS, "scale": 2.0}
    run = described(terminal)
    assert [step["status"] for step in run["steps"]] == ["completed"] * 3
    assert step_of(run, "train")["job_id"] and not step_of(run, "prepare")["job_id"]
    [pod] = cluster.pods.values()
    assert pod.job in step_of(run, "train")["job_id"]
    assert "train | training on 1000 rows" in terminal("pipeline", "logs", "latest").out


def test_the_notebook_widget_links_the_job_of_an_operator_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In a notebook the run's widget shows, beside the step, the job that runs it, linked."""
    import IPython.display

    shown: list[Any] = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    widget = choose("widget")
    widget.run_started("20261130-070000-abcdef", "operated", ["prepare", "train"])
    widget.step_started("train", "first run")
    page = "https://console.example.com/jobs/sm-train?region=us-east-1&x=<1>"
    widget.step_job(StepJob("train", "sagemaker", "sm-train-try1", page, 1))
    [box] = shown
    table = box.children[1].value
    train = next(row for row in table.split("<tr>") if "<td>train</td>" in row)
    assert "running — first run — sagemaker job" in train
    assert (
        f'<a href="{html.escape(page)}" target="_blank" rel="noopener">sm-train-try1</a>' in train
    )
    assert "sm-train" not in next(row for row in table.split("<tr>") if "<td>prepare</td>" in row)
