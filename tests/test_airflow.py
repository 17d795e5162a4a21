"""``pipeline export --to airflow``: the DAG file, run by a real Airflow with ``airflow dags test``.

Real parts: Apache Airflow 3 (in a venv of its own, tests/airflow_venv.py)
parses the exported file and runs its BashOperator tasks, each running the
stackmagic runtime against the machine's MariaDB and the S3 emulator.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow_venv import airflow_environment, airflow_venv
from conftest import Result
from services import DB_CANARY, S3_CANARY, Database
from team import bucket_options, register_team_stack, secret_sightings

from notebooks import write_notebook
from stackmagic.open_stack import OpenStack
from stackmagic.pipelines import PipelineRun
from stackmagic.registry import Registry
from stackmagic.runtime.task_word import derived_run_id
from stackmagic.stores.artifacts import ArtifactStore

pytestmark = pytest.mark.kernel

#: The team stack's secret options, as the workers' environment holds them.
WORKER_SECRETS = {
    "STACKMAGIC_METADATA_STORE_PASSWORD": DB_CANARY,
    "STACKMAGIC_ARTIFACT_STORE_SECRET_ACCESS_KEY": S3_CANARY,
}


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow home with its SQLite database made, for the module's ``dags test`` runs."""
    home = tmp_path_factory.mktemp("airflow")
    command = [str(airflow_venv()), "db", "migrate"]
    done = subprocess.run(
        command, env=airflow_environment(home, home), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return home


def dags_test(
    home: Path, dags: Path, dag_id: str, conf: dict[str, Any], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    command = [str(airflow_venv()), "dags", "test", dag_id, "--conf", json.dumps(conf)]
    environment = {**airflow_environment(home, dags), **env}
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)


def task_states(home: Path, dag_id: str) -> dict[str, str]:
    """The task states of the DAG's last run, as Airflow recorded them."""
    with sqlite3.connect(home / "airflow.db") as db:
        (run_id,) = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        rows = db.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
            (dag_id, run_id),
        )
        return dict(rows)


def airflow_run_id(home: Path, dag_id: str) -> str:
    with sqlite3.connect(home / "airflow.db") as db:
        (run_id,) = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
    return str(run_id)


def fan_notebook(folder: Path, *, failing: bool = False) -> Path:
    """prepare -> (features, stats) -> train, cheap; a file from prepare read by stats (each
    task a process of its own). ``failing``: prepare raises."""
    prepare = "rows = [i * scale for i in range(10)]\nopen('rows.txt', 'w').write(str(len(rows)))"
    return write_notebook(
        folder / ("failing.ipynb" if failing else "fan.ipynb"),
        "import stackmagic",
        f"%%step prepare\n{prepare}" + ("\nraise ValueError('prepare broke')" if failing else ""),
        "%%step features\nfeatures = [r * 2 for r in rows]",
        "%%step stats\nstats = {'n': int(open('rows.txt').read()), 'total': sum(rows)}",
        "%%step train --retries 1\n"
        "model = {'weight': sum(features) / stats['total'], 'name': name, 'n': stats['n']}\n"
        "stackmagic.log_metric('weight', model['weight'])",
        parameters='scale = 2.0\nname = "it\'s <first>"',
    )


def export(terminal: Callable[..., Result], notebook: Path, output: str) -> dict[str, Any]:
    result = terminal(
        "pipeline", "export", str(notebook), "--to", "airflow", "-o", output, "--json"
    )
    assert result.code == 0, result.err
    return json.loads(result.out)


def airflow_stack(
    terminal: Callable[..., Result],
    database: Database,
    request: pytest.FixtureRequest,
    *extra: str,
    api_url: str = "http://127.0.0.1:9",
    dags: Path | None = None,
) -> ArtifactStore:
    """The team stack (MariaDB, S3) with an airflow orchestrator of bash tasks; its bucket.

    ``dags``: the folder Airflow reads; by default a new ``dags`` here.
    """
    _, flags, bucket = bucket_options("s3", request)
    if dags is None:
        dags = Path.cwd() / "dags"
        dags.mkdir()
    orchestrator = [
        "--type=airflow",
        f"--api-url={api_url}",
        f"--dags-folder={dags}",
        f"--python={sys.executable}",  # the workers' Python with stackmagic
        *extra,
    ]
    register_team_stack(terminal, database, flags, orchestrator=orchestrator)
    return bucket


def test_dags_test_runs_the_exported_dag_with_a_fan_out_and_records_every_step(
    airflow_home: Path,
    team_database: Database,
    terminal: Callable[..., Result],
    project: Path,
    request: pytest.FixtureRequest,
) -> None:
    bucket = airflow_stack(terminal, team_database, request)
    exported = export(terminal, fan_notebook(project), "dags/fan.py")
    dag_file = project / "dags" / "fan.py"
    assert exported["dag_id"] == "fan" and exported["operator"] == "bash"
    source = dag_file.read_text()
    assert "Param(\"it's <first>\", type='string')" in source, "the notebook's parameters"
    assert "tasks['prepare'] >> tasks['features']" in source
    assert "[tasks['features'], tasks['stats']] >> tasks['train']" in source
    assert "'retries': 1" in source, "--retries on the task"

    done = dags_test(airflow_home, dag_file.parent, "fan", {"scale": 3.0}, WORKER_SECRETS)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert task_states(airflow_home, "fan") == dict.fromkeys(
        ["prepare", "features", "stats", "train"], "success"
    )

    with OpenStack.open(Registry.open(), None) as opened:
        (listed,) = opened.metadata.runs()
        record = opened.metadata.run(listed.id)
        run = PipelineRun(record, opened.artifact_store)
        model = run.outputs("train")["model"]
    assert record.id == derived_run_id(["fan", airflow_run_id(airflow_home, "fan")])
    assert record.status == "completed", record.error
    assert {step.name: step.status for step in record.steps} == dict.fromkeys(
        ["prepare", "features", "stats", "train"], "completed"
    ), "each task recorded its step, in the one run"
    assert record.parameters == {"scale": 3.0, "name": "it's <first>"}, "the DAG run's conf"
    assert model == {"weight": 2.0, "name": "it's <first>", "n": 10}
    assert run.outputs("stats")["stats"] == {"n": 10, "total": 135.0}

    airflow_files = [p for p in airflow_home.rglob("*") if p.is_file()]
    leaked = [
        p for p in airflow_files for c in (DB_CANARY, S3_CANARY) if c in p.read_text("latin-1")
    ]
    assert leaked == [], "Airflow's database and logs hold no secret"
    assert secret_sightings([DB_CANARY, S3_CANARY], project, bucket, team_database, []) == []


def test_a_failing_step_fails_its_task_and_the_steps_after_it_are_skipped(
    airflow_home: Path,
    team_database: Database,
    terminal: Callable[..., Result],
    project: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Secrets from an Airflow Variable this time, not the workers' environment."""
    airflow_stack(terminal, team_database, request, "--store-secret=stackmagic_store_secret")
    export(terminal, fan_notebook(project, failing=True), "dags/failing.py")
    source = (project / "dags" / "failing.py").read_text()
    assert "var.value.get('stackmagic_store_secret')" in source
    # the Variable from Airflow's environment backend, which saves an `airflow variables set`
    # (the README's, walked in test_airflow_server.py): masked alike, its name being secret
    variable = {"AIRFLOW_VAR_STACKMAGIC_STORE_SECRET": json.dumps(WORKER_SECRETS)}
    done = dags_test(airflow_home, project / "dags", "failing", {}, variable)
    assert done.returncode != 0
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        rendered = repr(db.execute("SELECT * FROM rendered_task_instance_fields").fetchall())
    logs = "".join(p.read_text() for p in (airflow_home / "logs").rglob("*") if p.is_file())
    assert "STACKMAGIC_STORE_SECRETS" in rendered, "the Variable was rendered into the task's env"
    assert DB_CANARY not in rendered + logs, "Airflow masked its value in the rendered fields"
    assert task_states(airflow_home, "failing") == {
        "prepare": "failed",
        "features": "upstream_failed",
        "stats": "upstream_failed",
        "train": "upstream_failed",
    }, "no task after the failed one ran"

    with OpenStack.open(Registry.open(), None) as opened:
        (listed,) = opened.metadata.runs()
        record = opened.metadata.run(listed.id)
    steps = {step.name: step for step in record.steps}
    assert record.status == "failed"
    assert steps["prepare"].status == "failed" and "prepare broke" in (steps["prepare"].error or "")
    for later in ("features", "stats", "train"):
        assert (steps[later].status, steps[later].error) == ("skipped", "step 'prepare' failed")


def test_kubernetes_and_docker_dag_files_carry_images_resources_and_secret_names(
    team_database: Database,
    terminal: Callable[..., Result],
    project: Path,
    request: pytest.FixtureRequest,
) -> None:
    """No Airflow needed: the files' shape, and the refusals that come before any upload."""
    airflow_stack(terminal, team_database, request, "--operator=kubernetes")
    notebook = write_notebook(
        project / "sized.ipynb",
        "%%step load --cpu 2 --memory 4G\nrows = [1, 2]",
        "%%step train --gpu 1 --retries 2 --image registry.example/train:1\nmodel = sum(rows)",
    )
    export = ["pipeline", "export", str(notebook), "--to", "airflow", "-o"]
    said = terminal(*export, "dags/pods.py")
    assert said.code == 2 and "needs an image with stackmagic installed" in said.err
    assert "--image on the airflow orchestrator" in said.err and "on load" in said.err
    assert terminal("orchestrator", "update", "kf", "--image=registry.example/steps:1").code == 0
    said = terminal(*export, "dags/pods.py")
    assert said.code == 2 and "a Kubernetes secret with the keys" in said.err
    assert "STACKMAGIC_METADATA_STORE_PASSWORD" in said.err and "--store-secret" in said.err
    options = ["--namespace=ml", "--store-secret=stores"]
    assert terminal("orchestrator", "update", "kf", *options).code == 0

    assert terminal(*export, "dags/pods.py").code == 0
    pods = (project / "dags" / "pods.py").read_text()
    compile(pods, "pods.py", "exec")
    assert "KubernetesPodOperator(" in pods and "NAMESPACE = 'ml'" in pods
    assert "V1SecretEnvSource(name='stores')" in pods, "the Kubernetes secret, by name"
    load = "{'retries': 0, 'image': 'registry.example/steps:1', 'resources': "
    assert load + "{'cpu': '2', 'memory': '4G'}}" in pods
    train = "{'retries': 2, 'image': 'registry.example/train:1', 'resources': "
    assert train + "{'nvidia.com/gpu': '1'}}" in pods
    assert DB_CANARY not in pods and S3_CANARY not in pods

    assert terminal(*export, "dags/containers.py", "--operator", "docker").code == 0
    containers = (project / "dags" / "containers.py").read_text()
    compile(containers, "containers.py", "exec")
    assert "DockerOperator(" in containers and "KubernetesPodOperator" not in containers
    assert "var.value.get('stores')" in containers, "the Airflow Variable, by name"

    said = terminal(*export, "dags/pods.py")
    assert said.code == 2 and "exists; give another file, or --force" in said.err
    said = terminal(*export, "dags/x.yaml")
    assert said.code == 2 and "name it .py" in said.err
    bundle = ["pipeline", "export", str(notebook), "--to", "bundle", "-o", "b"]
    said = terminal(*bundle, "--operator", "bash")
    assert said.code != 0 and "--operator goes with --to airflow" in said.err
