"""The vertex orchestrator: the real google-cloud-aiplatform client against a FAKE Vertex AI.

No Vertex AI runs here: tests/fake_vertex_pipelines.py plays its PipelineService (and Secret
Manager and the token endpoint, from tests/fake_vertex.py), as strict as the service on the
job it is sent, and runs a submitted pipeline's spec with kfp.local as the job's service
account. The stores are real: MariaDB and a bucket on the GCS emulator.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import wait_for
from fake_gce import FakeGce
from fake_http import requests_text, serve
from fake_vertex_pipelines import ENDED, FakeVertexPipelines, pipeline_job_refusal
from services import DB_CANARY, Database
from team import bucket_options, register_team_stack, secret_sightings, team_notebook
from vm_sandbox import GCP_PROJECT

pytestmark = pytest.mark.kernel

REGION = "europe-west4"
RUNNER = f"pipelines@{GCP_PROJECT}.iam.gserviceaccount.com"
IMAGE = "europe-docker.pkg.dev/demo/steps:1"
SECRET = "team-stores"
KEY = f"projects/{GCP_PROJECT}/locations/{REGION}/keyRings/ml/cryptoKeys/runs"


@pytest.fixture
def vertex(
    gce: FakeGce, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeVertexPipelines]:
    """The FAKE Vertex AI; this test's credentials get their tokens from it. The stores'
    secrets are in its Secret Manager, readable by the pipelines' account only."""
    key_file = Path(os.environ["GOOGLE_APPLICATION_CREDENTIALS"])
    fake = FakeVertexPipelines(GCP_PROJECT, REGION, tmp_path / "vertex-jobs", key_file)
    with contextlib.contextmanager(serve)(fake):
        submitter = tmp_path / "submitter.json"
        submitter.write_text(
            json.dumps({**json.loads(key_file.read_text()), "token_uri": f"{fake.url}/token"})
        )
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(submitter))
        fake.secrets[f"projects/{GCP_PROJECT}/secrets/{SECRET}"] = json.dumps(
            {"STACKMAGIC_METADATA_STORE_PASSWORD": DB_CANARY}
        )
        fake.secret_readers.add(RUNNER)
        try:
            yield fake
        finally:
            fake.stop_all()


def vertex_flags(fake: FakeVertexPipelines, *more: str) -> list[str]:
    """The orchestrator's options, as `stackmagic orchestrator register` takes them; ``more``
    replaces those it names."""
    given = {flag.split("=", 1)[0] for flag in more}
    usual = [
        "--type=vertex",
        f"--project={GCP_PROJECT}",
        f"--region={REGION}",
        f"--api-endpoint={fake.url}",
        f"--secret-manager-endpoint={fake.url}",
        f"--image={IMAGE}",
        f"--store-secret={SECRET}",
        f"--service-account={RUNNER}",
        f"--encryption-key={KEY}",
        "--labels=team=ml",
        "--poll-seconds=0.2",
    ]
    return [*(flag for flag in usual if flag.split("=", 1)[0] not in given), *more]


@pytest.fixture
def vertex_project(
    vertex: FakeVertexPipelines,
    team_database: Database,
    terminal,
    project: Path,
    request: pytest.FixtureRequest,
) -> tuple[Path, Any]:
    """A project whose stack ``team`` submits to the fake Vertex AI; its notebook and bucket."""
    _, flags, bucket = bucket_options("gcs", request)
    register_team_stack(terminal, team_database, flags, orchestrator=vertex_flags(vertex))
    return team_notebook(project), bucket


@pytest.fixture
def vertex_stack(
    vertex: FakeVertexPipelines,
    team_database: Database,
    terminal,
    project: Path,
    request: pytest.FixtureRequest,
) -> Callable[..., Path]:
    """Registers the stack ``team`` with the orchestrator's options and ``more`` (its bucket on
    ``store``, the GCS emulator unless told); its notebook."""

    def register(*more: str, store: str = "gcs") -> Path:
        _, flags, _ = bucket_options(store, request)
        orchestrator = vertex_flags(vertex, *more)
        register_team_stack(terminal, team_database, flags, orchestrator=orchestrator)
        return team_notebook(project)

    return register


def test_a_run_is_a_pipeline_job_whose_tasks_record_the_steps(
    vertex: FakeVertexPipelines,
    vertex_project: tuple[Path, Any],
    team_database: Database,
    terminal,
    tmp_path: Path,
) -> None:
    notebook, bucket = vertex_project
    said = [terminal("pipeline", "run", str(notebook), "-p", "scale", "3", "--wait")]
    assert said[0].code == 0, said[0].err
    [job] = vertex.pipeline_jobs.values()
    name = job.body["name"]
    job_id = name.rsplit("/", 1)[1]
    url = (
        f"https://console.cloud.google.com/vertex-ai/locations/{REGION}/pipelines/runs/{job_id}"
        f"?project={GCP_PROJECT}"
    )
    assert f"Vertex AI pipeline job {name}: {url}" in said[0].err
    for step in ("load", "train", "report"):
        assert f"{step}: completed in" in said[0].err, "progress comes from the tasks' records"

    said.append(terminal("pipeline", "describe", "latest", "--json"))
    run = json.loads(said[-1].out)
    assert run["status"] == "completed" and run["orchestrator_run_id"] == name
    assert run["orchestrator_url"] == url
    assert [(s["name"], s["status"]) for s in run["steps"]] == [
        ("load", "completed"),
        ("train", "completed"),
        ("report", "completed"),
    ]
    assert run["steps"][1]["metrics"] == [{"name": "mean", "value": pytest.approx(1498.5)}]

    body = job.body
    assert (
        body["serviceAccount"] == RUNNER
        and job.creator == f"runner@{GCP_PROJECT}.iam.gserviceaccount.com"
    )
    assert body["encryptionSpec"] == {"kmsKeyName": KEY}
    assert body["labels"] == {"team": "ml", "stackmagic-run": run["id"]}
    assert body["runtimeConfig"]["gcsOutputDirectory"] == f"{bucket.root}/_vertex"
    assert body["runtimeConfig"]["parameterValues"] == {
        "scale": 3.0,
        "stackmagic_run": run["id"],
        "stackmagic_no_cache": False,
        "stackmagic_only": "",
        "stackmagic_from": "",
        "stackmagic_schedule": "",
    }
    executors = body["pipelineSpec"]["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {IMAGE}
    tasks = {task["taskName"]: task["state"] for task in body["jobDetail"]["taskDetails"]}
    assert tasks == dict.fromkeys(["load", "train", "report"], "SUCCEEDED")

    read = [r.path for r in vertex.requests if r.path.endswith("/versions/latest:access")]
    assert read == [f"/v1/projects/{GCP_PROJECT}/secrets/{SECRET}/versions/latest:access"] * 3, (
        "each task read the stores' secrets from Secret Manager"
    )
    assert DB_CANARY not in requests_text(vertex.requests)
    assert secret_sightings([DB_CANARY], tmp_path, bucket, team_database, said) == []


def test_without_wait_the_command_returns_and_the_tasks_finish_the_run(
    vertex: FakeVertexPipelines, vertex_project: tuple[Path, Any], terminal
) -> None:
    notebook, _ = vertex_project
    submitted = terminal("pipeline", "run", str(notebook), "--json")
    assert submitted.code == 0, submitted.err
    run = json.loads(submitted.out)
    assert run["status"] == "running" and run["orchestrator_run_id"]
    [job] = vertex.pipeline_jobs.values()
    wait_for(lambda: job.body["state"] != "PIPELINE_STATE_RUNNING", timeout=300)
    described = json.loads(terminal("pipeline", "describe", run["id"], "--json").out)
    assert described["status"] == "completed", "the tasks recorded the run's end"


def test_cancel_cancels_the_pipeline_job(
    vertex: FakeVertexPipelines, vertex_project: tuple[Path, Any], terminal, project: Path
) -> None:
    from notebooks import write_notebook

    notebook, _ = vertex_project
    started = project / "started"
    write_notebook(
        notebook,
        "import time, pathlib",
        f"%%step wait\npathlib.Path({str(started)!r}).touch()\ntime.sleep(600)",
        parameters="scale = 1.0",
    )
    submitted = terminal("pipeline", "run", str(notebook), "--json")
    assert submitted.code == 0, submitted.err
    run = json.loads(submitted.out)
    wait_for(started.exists, timeout=300)
    cancelled = terminal("pipeline", "cancel", run["id"])
    assert cancelled.code == 0, cancelled.err
    [job] = vertex.pipeline_jobs.values()
    wait_for(lambda: job.body["state"] == "PIPELINE_STATE_CANCELLED", timeout=60)
    assert json.loads(terminal("pipeline", "describe", run["id"], "--json").out)["status"] == (
        "cancelled"
    )


@pytest.mark.parametrize(
    "more, expected",
    [
        (["--store-secret="], "give it with --store-secret=NAME"),
        (["--image="], "needs an image with stackmagic and kfp installed"),
        (["--region=us-east1"], "cannot submit the Vertex AI pipeline job for team: 400"),
    ],
)
def test_what_vertex_cannot_take_is_refused_in_one_line(
    more: list[str], expected: str, vertex_stack: Callable[..., Path], terminal
) -> None:
    result = terminal("pipeline", "run", str(vertex_stack(*more)))
    [error] = [line for line in result.err.splitlines() if "error" in line]
    assert result.code != 0 and expected in error, result.err


def test_a_store_that_is_not_gcs_needs_a_pipeline_root(
    vertex: FakeVertexPipelines, vertex_stack: Callable[..., Path], terminal
) -> None:
    result = terminal("pipeline", "run", str(vertex_stack(store="s3")))
    assert result.code != 0 and result.err.count("\n") == 1, result.err
    assert "give --pipeline-root=gs://BUCKET/FOLDER" in result.err
    assert not vertex.pipeline_jobs


EXPERIMENT = f"projects/{GCP_PROJECT}/locations/{REGION}/metadataStores/default/contexts/churn"


def test_each_run_joins_the_experiment_the_orchestrator_names(
    vertex: FakeVertexPipelines, vertex_stack: Callable[..., Path], terminal
) -> None:
    notebook = vertex_stack("--experiment=churn")
    runs = [terminal("pipeline", "run", str(notebook), "--wait", "-p", "scale", s) for s in "12"]
    for run in runs:
        assert run.code == 0, run.err
        assert "adding the job to the Vertex AI experiment churn as it starts" in run.err
    assert vertex.contexts[EXPERIMENT]["schemaTitle"] == "system.Experiment"
    jobs = [job.run_context["name"] for job in vertex.pipeline_jobs.values()]
    assert len(jobs) == 2 and vertex.children[EXPERIMENT] == jobs, "one experiment, both runs"


def test_an_experiment_name_another_tool_took_is_refused_before_anything_is_submitted(
    vertex: FakeVertexPipelines, vertex_stack: Callable[..., Path], terminal
) -> None:
    vertex.contexts[EXPERIMENT] = {"name": EXPERIMENT, "schemaTitle": "system.Dataset"}
    result = terminal("pipeline", "run", str(vertex_stack("--experiment=churn")))
    [error] = [line for line in result.err.splitlines() if "error" in line]
    assert result.code != 0, result.err
    assert "--experiment=churn names a Vertex ML Metadata context that is no experiment" in error
    assert not vertex.pipeline_jobs and EXPERIMENT not in vertex.children
    assert json.loads(terminal("pipeline", "describe", "latest", "--json").out)["status"] == (
        "failed"
    )


def test_the_fake_refuses_a_malformed_job(tmp_path: Path) -> None:
    from kfp import compiler, dsl

    def greet(name: str) -> None:
        print(name)

    def greeting(name: str = "world") -> None:
        task(name=name)

    for function in (greet, greeting):  # types, not this module's postponed annotations
        function.__annotations__ = {"name": str}
    task = dsl.component(greet, base_image=IMAGE)
    greeting = dsl.pipeline(name="greeting")(greeting)
    compiler.Compiler().compile(greeting, str(tmp_path / "p.yaml"))
    spec = yaml.safe_load((tmp_path / "p.yaml").read_text())
    runtime = {"gcsOutputDirectory": "gs://b/root", "parameterValues": {"name": "you"}}
    good = {"displayName": "p", "pipelineSpec": spec, "runtimeConfig": runtime}
    assert pipeline_job_refusal(good) is None
    for bad, said in [
        ({**good, "serviceAcount": RUNNER}, "Invalid JSON payload"),
        ({**good, "serviceAccount": "runner"}, "pipeline_job.serviceAccount"),
        ({**good, "runtimeConfig": {"gcsOutputDirectory": "s3://b"}}, "gcs_output_directory"),
        ({**good, "pipelineSpec": {**spec, "rooot": {}}}, "Not a PipelineSpec"),
        (
            {**good, "runtimeConfig": {**runtime, "parameterValues": {"x": 1}}},
            "no input parameter x",
        ),
        ({**good, "runtimeConfig": {**runtime, "parameterValues": {"name": 1}}}, "STRING value"),
        ({**good, "labels": {"Team": "ml"}}, "pipeline_job.labels[Team]"),
    ]:
        refusal = pipeline_job_refusal(bad)
        assert refusal is not None and said in refusal, (bad, refusal)


def test_a_schedule_is_a_vertex_schedule_whose_jobs_carry_its_name(
    vertex: FakeVertexPipelines, vertex_project: tuple[Path, Any], terminal
) -> None:
    notebook, _ = vertex_project
    made = terminal(
        "pipeline", "schedule", str(notebook), "--cron", "0 3 * * *", "-p", "scale", "3", "--json"
    )
    assert made.code == 0, made.err
    schedule = json.loads(made.out)
    [(schedule_id, created)] = vertex.schedules.items()
    assert schedule["orchestrator_id"] == created["name"] and schedule["orchestrator"] == "vertex"
    assert schedule["url"] == (
        f"https://console.cloud.google.com/vertex-ai/locations/{REGION}/pipelines/schedules/"
        f"{schedule_id}/detail?project={GCP_PROJECT}"
    )
    assert created["cron"] == "TZ=UTC 0 3 * * *" and created["displayName"] == "team"
    job = created["createPipelineJobRequest"]["pipelineJob"]
    assert job["serviceAccount"] == RUNNER and job["labels"]["stackmagic-schedule"] == "team"
    assert job["runtimeConfig"]["parameterValues"] == {
        "scale": 3.0,
        "stackmagic_run": "",
        "stackmagic_no_cache": False,
        "stackmagic_only": "",
        "stackmagic_from": "",
        "stackmagic_schedule": "team",
    }

    fired = vertex.fire(schedule_id)
    wait_for(lambda: fired.body["state"] in ENDED, timeout=300)
    assert fired.body["state"] == "PIPELINE_STATE_SUCCEEDED"
    [run] = json.loads(terminal("pipeline", "runs", "--json").out)
    assert run["schedule"] == "team" and run["status"] == "completed"
    assert run["parameters"] == {"scale": 3.0}

    dropped = terminal("pipeline", "unschedule", "team")
    assert dropped.code == 0, dropped.err
    assert (
        vertex.schedules == {} and json.loads(terminal("pipeline", "schedules", "--json").out) == []
    )


def test_a_job_that_ends_before_its_tasks_start_fails_the_run(
    vertex: FakeVertexPipelines, vertex_project: tuple[Path, Any], terminal
) -> None:
    notebook, _ = vertex_project
    vertex.unpullable.add(IMAGE)
    waited = terminal("pipeline", "run", str(notebook), "--wait")
    assert waited.code == 1, waited.err
    assert "the Vertex AI pipeline job ended FAILED before its steps recorded their end" in (
        waited.err
    )

    submitted = terminal("pipeline", "run", str(notebook), "--json")
    run = json.loads(submitted.out)
    job = vertex.pipeline_jobs[run["orchestrator_run_id"].rsplit("/", 1)[1]]
    wait_for(lambda: job.body["state"] in ENDED)
    assert json.loads(terminal("pipeline", "runs", "--json").out)[0]["status"] == "running"
    described = json.loads(terminal("pipeline", "describe", run["id"], "--json").out)
    assert described["status"] == "failed", "describe asked Vertex AI how the job ended"
    assert "ended FAILED" in described["error"]
