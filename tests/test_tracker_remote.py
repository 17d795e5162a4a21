"""The MLflow tracker where steps run off this machine: a cloud VM, a step operator's job.

Each logs its own steps to a real ``mlflow server`` (tests/mlflow_server.py), with the
tracker's token from the secret that carries the stores' secrets: Secret Manager for
gcp-vm (the FAKE Compute Engine of tests/fake_gce.py, the VM's startup script run in
tests/vm_sandbox.py), a Kubernetes Secret for the kubernetes step operator (the FAKE
API server of tests/fake_kubernetes.py, its pod's command run in tests/job_sandbox.py).
The stores are MariaDB and the S3 emulator; everything is read back with mlflow's client.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Result
from fake_gce import FakeGce
from fake_http import requests_text
from fake_kubernetes import FakeKubernetes
from kubernetes_cluster import NAMESPACE, kubeconfig_of
from mlflow_server import MLflowServer, mlflow_server  # noqa: F401 - the module's server
from operator_pipeline import OPERATOR, STORE_SECRETS, described, register_operator_stack, step_of
from services import DB_CANARY, Database
from team import secret_sightings, team_notebook
from test_gcp_vm import GCP_SECRET, gcp_stack  # noqa: F401 - a gcp-vm stack on the fake
from test_operator_kubernetes import cluster, created_jobs, sent  # noqa: F401 - the fake cluster
from test_step_operators import on_the_cluster
from test_tracker_mlflow import (  # noqa: F401 - mlflow's client and quiet settings
    TOKEN_CANARY,
    children,
    client,
    experiment_named,
    history,
    printed,
    quiet_mlflow,
)
from test_vm import run_id_of
from vm_sandbox import GCP_PROJECT, run_startup_script

from notebooks import write_notebook

pytestmark = pytest.mark.kernel

TOKEN_VARIABLE = "STACKMAGIC_EXPERIMENT_TRACKER_TOKEN"
#: the secrets no step sees; a kernel has the artifact store's key (README, "Credentials"),
#: so a step printing its environment shows the bucket's key, and only it
CANARIES = [TOKEN_CANARY, DB_CANARY]
#: a step that prints its kernel's environment, values included
PRINTS_ITS_ENVIRONMENT = "%%step environment\nimport os\nprint(sorted(os.environ.items()))"


def track_team_stack(terminal: Callable[..., Result], server: MLflowServer) -> str:
    """Stack ``team`` mirrors to tracker ``mlf`` (the token a canary); returns the experiment."""
    experiment = experiment_named("remote")
    for words in (
        [
            *("experiment-tracker", "register", "mlf", "--type=mlflow"),
            f"--tracking-uri={server.url}",
            f"--experiment={experiment}",
            f"--token={TOKEN_CANARY}",
        ],
        ["stack", "update", "team", "-e", "mlf"],
    ):
        result = terminal(*words)
        assert result.code == 0, result.err
    return experiment


def twin_of(tracking: Any, experiment: str, run_id: str) -> Any:
    """The MLflow run of the pipeline run ``run_id``."""
    [parent] = tracking.search_runs(
        [tracking.get_experiment_by_name(experiment).experiment_id],
        f"attributes.run_name = '{run_id}'",
    )
    return parent


def mlflow_sightings(server: MLflowServer) -> list[str]:
    """The tracking server's files (its database, the uploaded notebooks) holding the token."""
    files = [path for path in server.folder.rglob("*") if path.is_file()]
    assert {"mlflow.db", "server.log"} <= {path.name for path in files}
    return [str(path) for path in files if TOKEN_CANARY.encode() in path.read_bytes()]


def add_token_to_store_secret(gce: FakeGce) -> None:
    """What the user does: the tracker's token joins the stores' secrets in Secret Manager."""
    name = f"projects/{GCP_PROJECT}/secrets/{GCP_SECRET}"
    gce.secrets[name] = json.dumps({**json.loads(gce.secrets[name]), TOKEN_VARIABLE: TOKEN_CANARY})


def create_secret(fake: FakeKubernetes, folder: Path, name: str, data: dict[str, str]) -> None:
    """A Secret in the team's namespace, made as ``kubectl create secret generic`` makes it."""
    from kubernetes import client as kubernetes
    from kubernetes.config import new_client_from_config

    api = kubernetes.CoreV1Api(new_client_from_config(str(kubeconfig_of(fake, folder))))
    api.create_namespaced_secret(
        NAMESPACE,
        kubernetes.V1Secret(metadata=kubernetes.V1ObjectMeta(name=name), string_data=data),
    )


def startup_script_of(instance: dict[str, Any]) -> str:
    [script] = [i["value"] for i in instance["metadata"]["items"] if i["key"] == "startup-script"]
    return str(script)


def test_a_gcp_vm_logs_its_steps_with_the_token_from_secret_manager_and_shows_it_nowhere(
    gcp_stack: Callable[..., Any],  # noqa: F811 - the fixture imported above
    gce: FakeGce,
    project: Path,
    terminal: Callable[..., Result],
    team_database: Database,
    tmp_path: Path,
    client: Any,  # noqa: F811 - the fixture imported above
    mlflow_server: MLflowServer,  # noqa: F811 - the fixture imported above
) -> None:
    store = gcp_stack()
    experiment = track_team_stack(terminal, mlflow_server)
    add_token_to_store_secret(gce)
    team_notebook(project, PRINTS_ITS_ENVIRONMENT)
    launched = terminal("pipeline", "run", "team.ipynb", "--json")
    run_id = run_id_of(launched)
    parent = twin_of(client, experiment, run_id)
    assert parent.info.status == "RUNNING" and children(client, parent) == {}, (
        "the launch made the run's twin; no step is mirrored yet"
    )

    [instance] = gce.instances.values()
    vm = run_startup_script(startup_script_of(instance), tmp_path / "vm")
    assert vm.returncode == 0, vm.stdout[-3000:] + vm.stderr[-3000:]
    assert "not mirrored" not in vm.stdout + vm.stderr

    # only the VM ran since the launch: what is in MLflow now, the VM logged
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED"
    steps = children(client, parent)
    assert sorted(steps) == ["environment", "load", "report", "train"]
    assert {run.info.status for run in steps.values()} == {"FINISHED"}
    assert history(client, steps["train"], "mean") == [(0, 999.0)]
    said = printed(client, steps["environment"], tmp_path / "downloaded")
    assert f"('HOME', '{tmp_path / 'vm'}')" in said, "the step printed the VM's environment"
    assert TOKEN_VARIABLE not in said and TOKEN_CANARY not in said
    record = described(terminal, run_id)
    assert record["status"] == "completed" and record["tracker"]["run_id"] == parent.info.run_id

    assert TOKEN_CANARY not in startup_script_of(instance)
    assert TOKEN_CANARY not in requests_text(gce.requests), "nor in any request to Google Cloud"
    outputs = [launched, Result(vm.returncode, vm.stdout, vm.stderr)]
    assert secret_sightings(CANARIES, tmp_path, store, team_database, outputs) == []
    assert mlflow_sightings(mlflow_server) == []


def test_a_store_secret_without_the_token_leaves_the_vm_run_completed_but_not_mirrored(
    gcp_stack: Callable[..., Any],  # noqa: F811 - the fixture imported above
    gce: FakeGce,
    project: Path,
    terminal: Callable[..., Result],
    tmp_path: Path,
    client: Any,  # noqa: F811 - the fixture imported above
    mlflow_server: MLflowServer,  # noqa: F811 - the fixture imported above
) -> None:
    gcp_stack()  # its Secret Manager secret has the stores' secrets only
    experiment = track_team_stack(terminal, mlflow_server)
    team_notebook(project)
    run_id = run_id_of(terminal("pipeline", "run", "team.ipynb", "--json"))
    [instance] = gce.instances.values()

    vm = run_startup_script(startup_script_of(instance), tmp_path / "vm")

    assert vm.returncode == 0, vm.stdout[-3000:] + vm.stderr[-3000:]
    [line] = [line for line in vm.stderr.splitlines() if "not mirrored" in line]
    assert f"comes from the environment variable {TOKEN_VARIABLE}, which is not set" in line
    record = described(terminal, run_id)
    assert record["status"] == "completed"
    assert {step["status"] for step in record["steps"]} == {"completed"}
    assert record["tracker"]["note"] and record["tracker"]["note"] in line
    assert children(client, twin_of(client, experiment, run_id)) == {}


def test_a_kubernetes_job_logs_its_step_with_the_token_from_the_stores_secret_and_shows_it_nowhere(
    cluster: FakeKubernetes,  # noqa: F811 - the fixture imported above
    project: Path,
    terminal: Callable[..., Result],
    team_database: Database,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    client: Any,  # noqa: F811 - the fixture imported above
    mlflow_server: MLflowServer,  # noqa: F811 - the fixture imported above
) -> None:
    """prepare and check run here, train as a Job in the FAKE cluster; check looks for
    train's nested run while the pipeline goes on: only the job can have logged it."""
    tracked_secret = "team-stores-tracked"
    create_secret(
        cluster, tmp_path, tracked_secret, {**STORE_SECRETS, TOKEN_VARIABLE: TOKEN_CANARY}
    )
    store = register_operator_stack(
        terminal, team_database, request, on_the_cluster(cluster, tmp_path)
    )
    updated = terminal("step-operator", "update", OPERATOR, f"--store-secret={tracked_secret}")
    assert updated.code == 0, updated.err
    experiment = track_team_stack(terminal, mlflow_server)
    notebook = write_notebook(
        project / "handed.ipynb",
        "import os\nimport numpy as np\nimport stackmagic",
        "%%step prepare\nfeatures = np.arange(1000.0)",
        f"%%step train --operator {OPERATOR}\nprint(sorted(os.environ.items()))\n"
        "weights = features.mean()\nstackmagic.log_metric('mean', weights)",
        "%%step check --after train\nfrom mlflow import MlflowClient\n"
        "tracking = MlflowClient(server)\n"
        "found = tracking.search_runs(\n"
        "    [tracking.get_experiment_by_name(experiment).experiment_id],\n"
        "    \"tags.`stackmagic.step` = 'train'\")\n"
        "print('train mirrored:', [run.info.status for run in found])",
        parameters=f"server = {mlflow_server.url!r}\nexperiment = {experiment!r}",
    )

    result = terminal("pipeline", "run", str(notebook), "--progress", "lines")

    assert result.code == 0, result.err
    assert "not mirrored" not in result.out + result.err, "neither here nor in the job"
    run = described(terminal)
    parent = twin_of(client, experiment, run["id"])
    assert parent.info.status == "FINISHED"
    steps = children(client, parent)
    assert sorted(steps) == ["check", "prepare", "train"]
    said = printed(client, steps["check"], tmp_path / "downloaded")
    assert "train mirrored: ['FINISHED']" in said, "the job logged its step as it ended"
    train = steps["train"]
    assert train.data.tags["stackmagic.job_url"] == step_of(run, "train")["job_url"]
    assert history(client, train, "mean") == [(0, 499.5)]
    said = printed(client, train, tmp_path / "downloaded")
    assert f"('HOME', '{tmp_path / 'node'}" in said, "the step printed the pod's environment"
    assert TOKEN_VARIABLE not in said and TOKEN_CANARY not in said

    [job] = created_jobs(cluster)
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": tracked_secret}}], "the stores' way"
    assert TOKEN_CANARY not in sent(cluster), "the Job holds no secret"
    assert secret_sightings(CANARIES, tmp_path, store, team_database, [result]) == []
    assert mlflow_sightings(mlflow_server) == []
