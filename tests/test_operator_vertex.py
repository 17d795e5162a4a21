"""The Vertex AI step operator: the real google-cloud-aiplatform client against a FAKE Vertex AI.

tests/fake_vertex.py plays Vertex AI, Cloud Logging, Secret Manager and the
OAuth token endpoint, as strict as they are on what they are sent; a job's
container command runs on this machine (tests/job_sandbox.py) as the job's
service account. The stores are real: MariaDB and an S3 bucket on moto.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, started_run, wait_for
from fake_gce import FakeGce
from fake_http import requests_text, serve
from fake_vertex import FakeVertex
from operator_pipeline import (
    EXPECTED_WEIGHTS,
    OPERATOR,
    STORE_SECRETS,
    described,
    evaluated_summary,
    operator_notebook,
    register_operator_stack,
    step_of,
)
from services import DB_CANARY, S3_CANARY, Database
from team import secret_sightings
from vm_sandbox import GCP_PROJECT

from notebooks import write_notebook
from stackmagic.errors import StackmagicError
from stackmagic.flavors.step_operators import VertexStepOperator
from stackmagic.operators.base import (
    ENDED,
    FAILED,
    RUNNING,
    STOPPED,
    SUCCEEDED,
    OperatorJob,
    Resources,
)
from stackmagic.operators.vertex import Vertex

REGION = "europe-west4"
TRAINER = f"trainer@{GCP_PROJECT}.iam.gserviceaccount.com"
IMAGE = "europe-docker.pkg.dev/demo/train:1"
SECRET = "team-stores"


@pytest.fixture
def vertex(gce: FakeGce, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVertex]:
    """The FAKE Vertex AI, whose token endpoint gives this test's credentials (the service
    account key of the ``gce`` fixture) their tokens; the stores' secrets in its Secret Manager,
    readable by the jobs' account ``trainer`` only."""
    key_file = Path(os.environ["GOOGLE_APPLICATION_CREDENTIALS"])
    fake = FakeVertex(GCP_PROJECT, REGION, tmp_path / "vertex-jobs", key_file)
    with contextlib.contextmanager(serve)(fake):
        submitter = tmp_path / "submitter.json"
        submitter.write_text(
            json.dumps({**json.loads(key_file.read_text()), "token_uri": f"{fake.url}/token"})
        )
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(submitter))
        fake.secrets[f"projects/{GCP_PROJECT}/secrets/{SECRET}"] = json.dumps(STORE_SECRETS)
        fake.secret_readers.add(TRAINER)
        try:
            yield fake
        finally:
            for job in fake.jobs.values():
                if job.sandbox is not None:
                    job.sandbox.stop()


def flags(fake: FakeVertex, *more: str) -> list[str]:
    """The operator's options, as `stackmagic step-operator register gpu` takes them."""
    return [
        "--type=vertex",
        f"--project={GCP_PROJECT}",
        f"--region={REGION}",
        f"--api-endpoint={fake.url}",
        f"--logging-endpoint={fake.url}",
        f"--secret-manager-endpoint={fake.url}",
        f"--image={IMAGE}",
        f"--store-secret={SECRET}",
        f"--service-account={TRAINER}",
        "--spot=true",
        "--poll-seconds=0.2",
        *more,
    ]


def backend(fake: FakeVertex, *more: str) -> Vertex:
    """The backend, with the options `flags` gives."""
    options = dict(flag.removeprefix("--").split("=", 1) for flag in flags(fake, *more))
    del options["type"]
    config = VertexStepOperator.from_options(
        {key.replace("-", "_"): value for key, value in options.items()}, Path.cwd()
    )
    assert isinstance(config, VertexStepOperator)
    return Vertex("gpu", config, lambda name: "")


def a_job(step: str = "train", attempt: int = 1) -> OperatorJob:
    return OperatorJob("r20260101-abc", step, attempt, False, {}, "vertex")


def resources(image: str = IMAGE, **asked: Any) -> Resources:
    return Resources.from_settings(asked, image)


def submitted(operator: Vertex, script: str, image: str = IMAGE) -> tuple[str, str]:
    """A job whose container runs ``python -c script`` (the request otherwise the step's)."""
    request = operator.request(a_job(), resources(image))
    request["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["command"] = ["python", "-c", script]
    return operator.submit(a_job(), request)


def followed(operator: Vertex, job_id: str) -> tuple[str, list[str], list[str]]:
    """The job followed to its end as the driver follows it: why it ended (Vertex AI's words),
    the phases seen, its log."""
    lines: list[str] = []
    phases: list[str] = []
    cursor = None
    for _ in range(300):
        state = operator.state(job_id)
        new, cursor = operator.logs(job_id, cursor)
        lines += new
        phases.append(state.phase)
        if state.phase in ENDED:
            return state.reason, phases, lines
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end")


def test_the_custom_job_has_the_steps_image_command_machine_spot_runtime_identity_and_labels(
    vertex: FakeVertex,
) -> None:
    operator = backend(
        vertex, "--network=projects/123/global/networks/ml", "--staging-bucket=gs://team-staging"
    )
    request = operator.request(a_job("Fit_Model v2"), resources(cpu="4", memory="16G"))
    [pool] = request["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {"machineType": "e2-standard-4"}, "the cheapest that fits"
    assert pool["replicaCount"] == 1
    assert pool["containerSpec"]["imageUri"] == IMAGE
    assert pool["containerSpec"]["command"] == a_job("Fit_Model v2").command()
    assert request["jobSpec"]["scheduling"] == {"timeout": "86400s", "strategy": "SPOT"}
    assert request["jobSpec"]["serviceAccount"] == TRAINER
    assert request["jobSpec"]["network"] == "projects/123/global/networks/ml"
    assert request["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"].startswith(
        "gs://team-staging/sm-fit-model-v2-"
    )
    assert request["labels"] == {
        "stackmagic-run": "r20260101-abc",
        "stackmagic-step": "fit_model-v2",
        "stackmagic-try": "1",
    }, "labels as Vertex AI takes them"
    assert request["displayName"] == "sm-fit-model-v2-r20260101-abc-try1"
    assert operator.secret_location() == {
        "name": f"projects/{GCP_PROJECT}/secrets/{SECRET}",
        "endpoint": vertex.url,
    }, "the job reads the stores' secrets itself"
    assert vertex.requests == [], "a request asks Vertex AI nothing"


@pytest.mark.parametrize(
    "accelerator, asked, machine",
    [
        ("NVIDIA_TESLA_T4", {"cpu": "4", "memory": "20G", "gpu": 1}, ("n1-highmem-4", 1)),
        ("NVIDIA_TESLA_V100", {"cpu": "16", "gpu": 1}, ("n1-standard-16", 2)),
        ("NVIDIA_TESLA_A100", {"gpu": 2}, ("a2-highgpu-2g", 2)),
        ("NVIDIA_L4", {"cpu": "8", "gpu": 1}, ("g2-standard-8", 1)),
    ],
)
def test_a_step_with_gpus_gets_a_machine_that_carries_them(
    vertex: FakeVertex, accelerator: str, asked: dict[str, Any], machine: tuple[str, int]
) -> None:
    operator = backend(vertex, f"--accelerator-type={accelerator}")
    spec = operator.request(a_job(), resources(**asked))["jobSpec"]["workerPoolSpecs"][0]
    assert spec["machineSpec"] == {
        "machineType": machine[0],
        "acceleratorType": accelerator,
        "acceleratorCount": machine[1],
    }


def test_a_machine_type_too_small_for_the_step_is_refused_with_the_types_that_fit(
    vertex: FakeVertex,
) -> None:
    operator = backend(vertex, "--machine-type=n1-standard-4")
    with pytest.raises(StackmagicError) as refused:
        operator.request(a_job(), resources(cpu="8", memory="40G"))
    assert str(refused.value) == (
        "step 'train' asks for --cpu 8 --memory 40G, more than --machine-type=n1-standard-4 has "
        "(4 CPUs, 15 GiB, 0 GPUs); types that fit: n1-highmem-8, e2-standard-16, n1-standard-16, "
        "n1-highmem-16, e2-standard-32, n1-standard-32, n1-highmem-32, n1-standard-64 ... "
        "(give one with --machine-type)"
    )
    assert backend(vertex, "--machine-type=n1-standard-16").request(
        a_job(), resources(cpu="8", memory="40G")
    )["jobSpec"]["workerPoolSpecs"][0]["machineSpec"] == {"machineType": "n1-standard-16"}


def test_a_job_runs_as_its_service_account_which_reads_the_secret_and_its_log_comes_once(
    vertex: FakeVertex,
) -> None:
    operator = backend(vertex)
    location = json.dumps(operator.secret_location())
    job_id, url = submitted(
        operator,
        "import json\nfrom stackmagic.operators.vertex import Vertex\n"
        f"secrets = json.loads(Vertex.read_secret({location}))\n"
        "print('read', *sorted(secrets))\n"
        "for n in range(1500): print('line', n)",
    )
    number = job_id.rsplit("/", 1)[1]
    assert job_id == f"projects/{GCP_PROJECT}/locations/{REGION}/customJobs/{number}"
    assert url == (
        f"https://console.cloud.google.com/vertex-ai/locations/{REGION}/training/{number}/cpu"
        f"?project={GCP_PROJECT}"
    )
    reason, phases, lines = followed(operator, job_id)
    assert phases[-1] == SUCCEEDED and reason == ""
    assert lines == [
        "Waiting for job to be provisioned.",
        f"read {' '.join(sorted(STORE_SECRETS))}",
        *(f"line {n}" for n in range(1500)),
        "Job completed successfully.",
    ], "every line once, in order, Vertex AI's own among them"
    created = json.loads(next(r.body for r in vertex.requests if "/customJobs?" in r.path))
    assert created["jobSpec"]["scheduling"]["strategy"] in ("SPOT", 4)
    text = requests_text(vertex.requests)
    assert DB_CANARY not in text and S3_CANARY not in text, "secrets only in the job's answer"

    with pytest.raises(StackmagicError) as refused:
        Vertex.read_secret(operator.secret_location())  # as the submitter, not the job
    assert "Secret Manager refused to give" in str(refused.value)
    assert "403: Permission 'secretmanager.versions.access' denied" in str(refused.value)


def test_a_job_whose_image_cannot_be_pulled_fails_with_vertex_ais_reason(
    vertex: FakeVertex,
) -> None:
    vertex.unpullable.add("europe-docker.pkg.dev/demo/missing:1")
    operator = backend(vertex)
    job_id, _ = submitted(operator, "print('never')", image="europe-docker.pkg.dev/demo/missing:1")
    reason, phases, lines = followed(operator, job_id)
    assert phases[-1] == FAILED
    assert reason.startswith("Unable to pull image europe-docker.pkg.dev/demo/missing:1")
    assert not operator.state(job_id).interrupted
    assert "never" not in lines


def test_a_preempted_job_is_interrupted_and_a_stopped_one_stopped(vertex: FakeVertex) -> None:
    operator = backend(vertex)
    vertex.preempt = 1
    preempted, _ = submitted(operator, "import time; time.sleep(30)")
    reason, _, _ = followed(operator, preempted)
    assert operator.state(preempted).interrupted and "preempted" in reason

    job_id, _ = submitted(operator, "import time; print('started', flush=True); time.sleep(60)")
    assert operator.state(job_id).phase == RUNNING
    operator.stop(job_id)
    _, phases, _ = followed(operator, job_id)
    assert phases[-1] == STOPPED and vertex.running() == []
    operator.stop(job_id)  # ended already: left as it is
    assert sum(":cancel" in r.path for r in vertex.requests) == 2


@pytest.mark.parametrize(
    "options, said",
    [
        (
            ["--project=other-project"],
            "403 Permission 'aiplatform.customJobs.create' denied on resource "
            "'//aiplatform.googleapis.com/projects/other-project/locations/europe-west4' "
            "(or it may not exist)",
        ),
        (
            ["--machine-type=n1-standard-7"],
            "400 List of found errors: 1.Field: job_spec.worker_pool_specs[0].machine_spec."
            'machine_type; Message: Machine type "n1-standard-7" is not supported',
        ),
        (
            ["--machine-type=n2-standard-8"],
            "400 List of found errors: 1.Field: job_spec.worker_pool_specs[0].machine_spec."
            "accelerator_type; Message: Accelerator NVIDIA_TESLA_T4 x 1 is not supported for "
            "machine type n2-standard-8",
        ),
    ],
)
def test_vertex_ais_refusal_is_one_line_naming_the_job(
    vertex: FakeVertex, options: list[str], said: str
) -> None:
    operator = backend(vertex, *options)
    with pytest.raises(StackmagicError) as refused:
        operator.submit(a_job(), operator.request(a_job(), resources(gpu=1)))
    assert str(refused.value) == (
        f"cannot submit the Vertex AI custom job {a_job().name()}: {said}; "
        "check --project, --region, --image and --service-account"
    )
    assert vertex.jobs == {}


def test_log_reads_over_cloud_loggings_quota_wait_for_the_next_poll(vertex: FakeVertex) -> None:
    operator = backend(vertex)
    job_id, _ = submitted(operator, "print('hello')")
    _, _, lines = followed(operator, job_id)
    vertex.over_read_quota = 1
    assert operator.logs(job_id, None) == ([], {"timestamp": "", "seen": []}), "nothing read"
    assert operator.logs(job_id, None)[0] == lines, "read at the next call"


def test_a_log_cloud_logging_refuses_is_one_line_saying_what_to_grant(vertex: FakeVertex) -> None:
    operator = backend(vertex, "--project=other-project")
    job_id = "projects/other-project/locations/europe-west4/customJobs/1"
    with pytest.raises(StackmagicError) as refused:
        operator.logs(job_id, None)
    assert str(refused.value) == (
        f"cannot read the log of the Vertex AI custom job {job_id} from Cloud Logging: 403 The "
        "caller does not have permission on ['projects/other-project']; grant the identity "
        "following the run roles/logging.viewer"
    )


# -- end to end: `stackmagic pipeline run` with a stack whose step operator is Vertex AI --------

Terminal = Callable[..., Result]


@pytest.fixture
def vertex_stack(
    vertex: FakeVertex, terminal: Terminal, team_database: Database, request: pytest.FixtureRequest
) -> Any:
    """Stack ``team`` (MariaDB, a bucket on moto) with step operator ``gpu`` on the fake."""
    return register_operator_stack(terminal, team_database, request, flags(vertex))


def created_jobs(fake: FakeVertex) -> list[dict[str, Any]]:
    """The custom jobs as Vertex AI was sent them."""
    return [json.loads(r.body) for r in fake.requests if "/customJobs?" in r.path]


def test_a_step_trains_on_vertex_ai_between_two_steps_here_again_when_preempted_no_secret_out(
    vertex: FakeVertex,
    vertex_stack: Any,
    project: Path,
    terminal: Terminal,
    team_database: Database,
) -> None:
    vertex.preempt = 1
    operator_notebook(project, "--cpu 4 --memory 16G --retries 1")
    ran = terminal("pipeline", "run", "operated.ipynb", "--progress", "lines")
    assert ran.code == 0, ran.err
    assert evaluated_summary(terminal, vertex_stack) == {"weights": EXPECTED_WEIGHTS, "scale": 2.0}
    shown = ran.out + ran.err
    assert "train | training on 1000 rows" in shown
    assert "train: try 1 failed: vertex job projects/" in shown
    assert "interrupted: The replica workerpool0-0 was preempted" in shown, "and tried again"

    run = described(terminal)
    assert [step["status"] for step in run["steps"]] == ["completed"] * 3
    first, second = vertex.jobs
    train = step_of(run, "train")
    assert train["job_id"] == f"projects/{GCP_PROJECT}/locations/{REGION}/customJobs/{second}"
    assert train["job_url"] == (
        f"https://console.cloud.google.com/vertex-ai/locations/{REGION}/training/{second}/cpu"
        f"?project={GCP_PROJECT}"
    )
    tries = created_jobs(vertex)
    assert [job["labels"]["stackmagic-try"] for job in tries] == ["1", "2"]
    [pool] = tries[1]["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {"machineType": "e2-standard-4"}
    assert pool["containerSpec"]["command"][:4] == ["python", "-m", "stackmagic.runtime", "job"]
    assert tries[1]["jobSpec"]["serviceAccount"] == TRAINER
    assert tries[1]["labels"]["stackmagic-run"] == run["id"].lower()

    lines = vertex.jobs[second].sandbox.lines  # type: ignore[union-attr]
    outputs = [ran, Result(0, "\n".join(lines), requests_text(vertex.requests))]
    canaries = [DB_CANARY, S3_CANARY]
    assert secret_sightings(canaries, project, vertex_stack, team_database, outputs) == []


def test_a_job_whose_image_cannot_be_pulled_fails_the_step_in_one_line_with_its_page(
    vertex: FakeVertex, vertex_stack: Any, project: Path, terminal: Terminal
) -> None:
    missing = "europe-docker.pkg.dev/demo/missing:1"
    vertex.unpullable.add(missing)
    operator_notebook(project, f"--image {missing}")
    ran = terminal("pipeline", "run", "operated.ipynb")
    assert ran.code != 0
    [job_id] = vertex.jobs
    name = f"projects/{GCP_PROJECT}/locations/{REGION}/customJobs/{job_id}"
    said = f"vertex job {name} failed: Unable to pull image {missing}: "
    assert said in ran.err and "roles/artifactregistry.reader. (https://console.cloud" in ran.err
    steps = {step["name"]: step["status"] for step in described(terminal)["steps"]}
    assert steps == {"prepare": "completed", "train": "failed", "evaluate": "skipped"}


def test_a_cancelled_run_cancels_its_vertex_ai_job(
    vertex: FakeVertex, vertex_stack: Any, project: Path, terminal: Terminal
) -> None:
    notebook = write_notebook(
        project / "slow.ipynb",
        "%%step load\nrows = [1, 2, 3]",
        f"%%step train --operator {OPERATOR}\nimport time\nprint('waiting')\ntime.sleep(60)\n"
        "total = sum(rows)",
        "%%step report\nprint(total)",
    )
    with started_run(notebook) as driver:
        sandbox = wait_for(
            lambda: next((job.sandbox for job in vertex.jobs.values()), None), what="a job"
        )
        wait_for(lambda: "waiting" in sandbox.lines, what="the step to start in the job")
        run_id = json.loads(terminal("pipeline", "runs", "--json").out)[0]["id"]
        cancelled = terminal("pipeline", "cancel", run_id)
        assert cancelled.code == 0, cancelled.err
        assert driver.wait(timeout=30) == 1
    assert sum(":cancel" in r.path for r in vertex.requests) == 1
    assert vertex.running() == [], "no job left running"
    steps = {step["name"]: step["status"] for step in described(terminal, run_id)["steps"]}
    assert steps == {"load": "completed", "train": "cancelled", "report": "skipped"}
