"""The kubeflow orchestrator: compile, run with kfp.local, submit to a KFP API.

Real parts: the kfp SDK compiles and loads the pipeline; ``kfp.local`` runs
it, its tasks running the runtime against the machine's MariaDB and the S3
emulator; the real ``kfp.Client`` submits it. No Kubeflow cluster runs here,
so the submission goes to tests/fake_kfp.py, a FAKE KFP API server that
implements the few endpoints used and runs submitted pipelines with kfp.local.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import wait_for
from fake_http import requests_text, serve
from fake_kfp import FakeKfp
from services import DB_CANARY, S3_CANARY, Database
from team import bucket_options, register_team_stack, secret_sightings, team_notebook
from test_pipeline_run import branches_notebook

from notebooks import write_notebook

pytestmark = pytest.mark.kernel

TOKEN_CANARY = "CANARY-token-" + secrets.token_hex(6)
#: What the Kubernetes secret named by --store-secret holds for the team stack.
POD_SECRETS = {
    "STACKMAGIC_METADATA_STORE_PASSWORD": DB_CANARY,
    "STACKMAGIC_ARTIFACT_STORE_SECRET_ACCESS_KEY": S3_CANARY,
}


@pytest.fixture
def fake_kfp() -> Iterator[FakeKfp]:
    yield from serve(FakeKfp(token=TOKEN_CANARY, pod_environment=dict(POD_SECRETS)))


def remote_flags(host: str, *extra: str) -> list[str]:
    return [
        "--type=kubeflow",
        f"--host={host}",
        "--namespace=kubeflow",
        "--image=registry.example/steps:1",
        "--store-secret=team-secrets",
        "--auth=token",
        f"--token={TOKEN_CANARY}",
        "--service-account=pipeline-runner",
        "--experiment=nightly",
        "--image-pull-policy=Always",
        *extra,
    ]


def settings_notebook(folder: Path) -> Path:
    return write_notebook(
        folder / "settings.ipynb",
        "import numpy as np",
        "%%step load --cpu 2 --memory 4G\nfeatures = np.arange(10.0) * scale",
        "%%step train --gpu 1 --retries 2 --image registry.example/train:1\nweights = features.mean()",
        "%%step report\nsummary = {'weights': float(weights), 'name': name}",
        parameters="scale = 2.0\nname = 'first'\nflag = True\nsizes = [1, 2]",
    )


def tasks_by_step(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        task["taskInfo"]["name"]: {"key": key, **task}
        for key, task in document["root"]["dag"]["tasks"].items()
    }


def test_the_compiled_pipeline_loads_and_carries_the_step_settings_but_no_secret(
    team_database: Database, terminal, project: Path, request: pytest.FixtureRequest
) -> None:
    from kfp import components

    url, flags, bucket = bucket_options("s3", request)
    register_team_stack(
        terminal, team_database, flags, orchestrator=remote_flags("http://127.0.0.1:9")
    )
    result = terminal(
        "pipeline",
        "export",
        str(settings_notebook(project)),
        "--to",
        "kubeflow",
        "-o",
        "pipeline.yaml",
        "--json",
    )
    assert result.code == 0, result.err
    exported = json.loads(result.out)
    assert bucket.exists(exported["bundle"]), "the steps fetch the bundle from the bucket"

    package = project / "pipeline.yaml"
    loaded = components.load_component_from_file(str(package))
    inputs = loaded.component_spec.inputs
    assert {
        name: (spec.type, spec.default)
        for name, spec in inputs.items()
        if not name.startswith("stackmagic_")
    } == {
        "scale": ("Float", 2.0),
        "name": ("String", "first"),
        "flag": ("Boolean", True),
    }, "lists are no inputs: the tasks read them from the run's record"
    assert {"stackmagic_run", "stackmagic_no_cache", "stackmagic_only", "stackmagic_from"} <= set(
        inputs
    )

    document, platform = yaml.safe_load_all(
        package.read_text()
    )  # the pipeline; Kubernetes settings
    tasks = tasks_by_step(document)
    assert list(tasks) == ["load", "train", "report"]
    assert tasks["train"]["dependentTasks"] == [tasks["load"]["key"]]
    assert tasks["report"]["dependentTasks"] == [tasks["train"]["key"]]
    assert tasks["train"]["retryPolicy"]["maxRetryCount"] == 2
    assert all(task["cachingOptions"] == {} for task in tasks.values()), "KFP's cache is off"

    executors = document["deploymentSpec"]["executors"]
    container = {
        step: executors[f"exec-{task['key']}"]["container"] for step, task in tasks.items()
    }
    assert container["load"]["resources"]["resourceCpuLimit"] == "2"
    assert container["load"]["resources"]["resourceMemoryRequest"] == "4G"
    assert container["train"]["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert container["train"]["resources"]["accelerator"]["resourceCount"] == "1"
    assert container["train"]["image"] == "registry.example/train:1"
    assert container["report"]["image"] == "registry.example/steps:1"
    assert "pip install" not in package.read_text(), "steps install nothing when they start"

    kubernetes = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for task in tasks.values():
        assert kubernetes[f"exec-{task['key']}"]["imagePullPolicy"] == "Always"
        mounted = kubernetes[f"exec-{task['key']}"]["secretAsEnv"][0]
        assert mounted["secretName"] == "team-secrets"
        assert {m["secretKey"] for m in mounted["keyToEnv"]} == set(POD_SECRETS)

    text = package.read_text()
    for canary in (DB_CANARY, S3_CANARY, TOKEN_CANARY):
        assert canary not in text


@pytest.mark.parametrize(
    "orchestrator, notebook_parameters, expected",
    [
        (None, "scale = 1.0", "compiling for Kubeflow needs a stack with a kubeflow one"),
        (
            ["--type=kubeflow", "--host=http://127.0.0.1:9", "--store-secret=s"],
            "scale = 1.0",
            "needs an image with stackmagic installed",
        ),
        (
            ["--type=kubeflow", "--host=http://127.0.0.1:9", "--image=i"],
            "scale = 1.0",
            "give it with --store-secret=NAME",
        ),
        (
            ["--type=kubeflow", "--host=http://127.0.0.1:9", "--image=i", "--store-secret=s"],
            "stackmagic_seed = 1",
            "names starting with 'stackmagic_' are stackmagic's own",
        ),
    ],
)
def test_what_kubeflow_cannot_take_is_refused_in_one_line(
    orchestrator: list[str] | None,
    notebook_parameters: str,
    expected: str,
    team_database: Database,
    terminal,
    project: Path,
    request: pytest.FixtureRequest,
) -> None:
    _, flags, _ = bucket_options("s3", request)
    register_team_stack(terminal, team_database, flags, orchestrator=orchestrator)
    notebook = write_notebook(
        project / "n.ipynb", "%%step one\nvalue = 1", parameters=notebook_parameters
    )
    result = terminal("pipeline", "export", str(notebook), "--to", "kubeflow", "-o", "p.yaml")
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert expected in result.err
    assert not (project / "p.yaml").exists()


def test_kfp_local_runs_the_compiled_pipeline_against_mariadb_and_s3(
    team_database: Database, terminal, project: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url, flags, bucket = bucket_options("s3", request)
    register_team_stack(
        terminal, team_database, flags, orchestrator=["--type=kubeflow", "--mode=local"]
    )
    # a step that shows its environment: the stores' secrets must not be in it
    snoop = "%%step snoop\nimport os\nprint(sorted(os.environ.items()))"
    said = [
        terminal(
            "pipeline",
            "run",
            str(team_notebook(project, snoop)),
            "-p",
            "scale",
            "3",
            "--progress",
            "lines",
        )
    ]
    assert said[0].code == 0, said[0].err
    for step in ("load", "train", "report", "snoop"):
        assert f"  {step}: completed in" in said[0].err, "progress comes from the tasks' records"

    said.append(terminal("pipeline", "describe", "latest", "--json"))
    run = json.loads(said[-1].out)
    assert run["status"] == "completed" and run["stack"] == "team"
    assert [s["status"] for s in run["steps"]] == ["completed"] * 4
    assert run["parameters"] == {"scale": 3} and run["overridden"] == ["scale"]
    train = run["steps"][1]
    assert train["metrics"] == [{"name": "mean", "value": pytest.approx(1498.5)}]
    said.append(terminal("pipeline", "load", "latest", "report.summary", "--json"))
    summary = json.loads(said[-1].out)["summary"]
    assert bucket.load(summary["uri"]) == {"weights": 1498.5, "scale": 3}, "outputs flowed"

    pages = {
        step: bucket.read_bytes(f"{url}/team/{run['id']}/{step}/{step}.html")
        for step in ("load", "train", "report")
    }
    assert all(b"<html" in page.lower() for page in pages.values()), "executed notebooks as HTML"
    assert b"Saved features (numpy" in pages["load"], "with the step's own output"
    assert bucket.exists(f"{url}/team/{run['id']}/kfp-local.log")
    # the step's kernel holds the bucket's credentials (it reads and writes artifacts), so what
    # snoop printed has them; never the database password, and nothing else has either
    snooped = f"{url}/team/{run['id']}/snoop/"
    leaks = secret_sightings([DB_CANARY, S3_CANARY], tmp_path, bucket, team_database, said)
    assert [place for place in leaks if not place.startswith(snooped)] == [], leaks
    assert secret_sightings([DB_CANARY], tmp_path, bucket, team_database, said) == []


@pytest.fixture
def local_kubeflow(terminal, project: Path) -> Path:
    """A project whose active stack runs pipelines with kfp.local on the local stores."""
    for words in (
        ["init"],
        ["orchestrator", "register", "kfl", "--type=kubeflow", "--mode=local"],
        ["stack", "register", "here", "-m", "default", "-a", "default", "-o", "kfl"],
        ["stack", "set", "here"],
    ):
        assert terminal(*words).code == 0
    return project


def test_an_export_path_that_cannot_be_written_is_refused_before_anything_is_uploaded(
    terminal, local_kubeflow: Path
) -> None:
    notebook = write_notebook(local_kubeflow / "small.ipynb", "%%step one\nvalue = 1")
    (local_kubeflow / "p.yaml").write_text("mine\n")
    bundles = local_kubeflow / ".stackmagic" / "artifacts" / "_bundles"
    for output, said in (
        ("p.yaml", "p.yaml exists; give another file, or --force"),
        ("p.json", "p.json: a Kubeflow pipeline is written as YAML"),
    ):
        result = terminal("pipeline", "export", str(notebook), "--to", "kubeflow", "-o", output)
        assert result.code == 2 and result.err.count("\n") == 1 and said in result.err, result.err
    assert (local_kubeflow / "p.yaml").read_text() == "mine\n" and not bundles.exists()
    assert not (local_kubeflow / "p.json").exists()
    forced = terminal(
        "pipeline", "export", str(notebook), "--to", "kubeflow", "-o", "p.yaml", "--force"
    )
    assert forced.code == 0, forced.err
    assert "pipelineInfo" in (local_kubeflow / "p.yaml").read_text() and bundles.is_dir()


def test_a_failing_task_fails_the_run_and_skips_the_steps_after_it(
    terminal, local_kubeflow: Path
) -> None:
    notebook = write_notebook(
        local_kubeflow / "broken.ipynb",
        "%%step load\nrows = list(range(n)) + names",
        "%%step check --after load\nassert len(rows) > 50, f'too few rows: {rows}'",
        "%%step report --after check\ntotal = sum(rows)",
        parameters="n = 3\nnames = ['a', 'b \"quoted\"']",
    )
    result = terminal("pipeline", "run", str(notebook), "-p", "n", "4", "--progress", "none")
    assert result.code == 1, result.err
    # an integer stays one (range() takes it), a list of text arrives whole
    assert (
        "step 'check' failed: AssertionError: too few rows: [0, 1, 2, 3, 'a', 'b \"quoted\"']"
        in result.err
    )
    run = json.loads(terminal("pipeline", "describe", "latest", "--json").out)
    assert run["status"] == "failed"
    assert {s["name"]: s["status"] for s in run["steps"]} == {
        "load": "completed",
        "check": "failed",
        "report": "skipped",
    }
    assert run["steps"][1]["notebook"], "the failed step's executed notebook is kept"

    # a list is no KFP input (kfp.local would break it): the tasks take it from the run's record
    given = terminal("pipeline", "run", str(notebook), "-p", "names", "['c']", "--progress", "none")
    assert "too few rows: [0, 1, 2, 'c']" in given.err, given.err


def test_skip_reasons_name_the_failed_step_a_step_depends_on(
    terminal, local_kubeflow: Path
) -> None:
    notebook = branches_notebook(local_kubeflow)
    result = terminal("pipeline", "run", str(notebook), "--progress", "none")
    assert result.code == 1, result.err
    run = json.loads(terminal("pipeline", "describe", "latest", "--json").out)
    # kfp.local runs one task at a time, in an order of its own, and stops at the first failed one
    [failed] = [s["name"] for s in run["steps"] if s["status"] == "failed"]
    assert run["error"].startswith(f"step {failed!r} failed: ")
    stopped = f"not started: the orchestrator stopped the run after step {failed!r} failed"
    after = {"boom": {"after", "last", "both"}, "bust": {"both"}}[failed]
    other = ({"boom", "bust"} - {failed}).pop()
    ended = {s["name"]: (s["status"], s["error"]) for s in run["steps"]}
    assert {name: ended[name] for name in after} == dict.fromkeys(
        after, ("skipped", f"step {failed!r} failed")
    )
    assert ended[other] == ("skipped", stopped), "a branch that never started depends on no failure"
    for name in set(ended) - after - {failed, other}:
        assert ended[name] in {("completed", None), ("skipped", stopped)}, name


def test_a_task_that_fails_once_is_tried_again(terminal, local_kubeflow: Path) -> None:
    marker = local_kubeflow / "tried"
    notebook = write_notebook(
        local_kubeflow / "flaky.ipynb",
        "import pathlib",
        f"%%step fetch --retries 2\nmarker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n    marker.touch()\n    raise ConnectionError('first try')\n"
        "value = 42",
        "%%step use\nresult = value + 1",
    )
    result = terminal("pipeline", "run", str(notebook), "--progress", "none", "--json")
    assert result.code == 0, result.err
    run = json.loads(result.out)
    assert run["status"] == "completed"
    fetch = run["steps"][0]
    assert fetch["status"] == "completed" and fetch["attempts"] == 2, "KFP started the task again"


def test_inputs_that_arrive_as_text_get_their_defaults_types() -> None:
    from stackmagic.runtime.task import typed_parameters

    defaults = {"n": 3, "lr": 0.1, "name": "x", "flag": True, "sizes": [1]}
    given = {"n": "5.0", "lr": "1", "name": "5", "flag": "false", "sizes": "[2, 3]"}
    assert typed_parameters(defaults, given) == {
        "n": 5,
        "lr": 1.0,
        "name": "5",
        "flag": False,
        "sizes": [2, 3],
    }
    assert isinstance(typed_parameters(defaults, given)["n"], int), "kfp.local sends 5 as 5.0"


@pytest.fixture
def kubeflow_notebook(
    fake_kfp: FakeKfp,
    team_database: Database,
    terminal,
    project: Path,
    request: pytest.FixtureRequest,
) -> Path:
    """A notebook in a project whose active stack submits to the fake KFP server."""
    _, flags, _ = bucket_options("s3", request)
    register_team_stack(terminal, team_database, flags, orchestrator=remote_flags(fake_kfp.url))
    return team_notebook(project)


def test_a_run_is_submitted_through_the_kfp_api_and_followed_to_its_end(
    fake_kfp: FakeKfp, kubeflow_notebook: Path, terminal
) -> None:
    notebook = kubeflow_notebook

    waited = terminal("pipeline", "run", str(notebook), "-p", "scale", "3", "--wait", "--json")
    assert waited.code == 0, waited.err
    run = json.loads(waited.out)
    [kfp_run] = fake_kfp.runs.values()
    assert run["status"] == "completed" and [s["status"] for s in run["steps"]] == ["completed"] * 3
    assert run["orchestrator_run_id"] == kfp_run["run_id"]
    assert run["orchestrator_url"] == f"{fake_kfp.url}/#/runs/details/{kfp_run['run_id']}"
    assert kfp_run["runtime_config"]["parameters"] == {
        "scale": 3.0,
        "stackmagic_run": run["id"],
        "stackmagic_no_cache": False,
        "stackmagic_only": "",
        "stackmagic_from": "",
        "stackmagic_schedule": "",
    }
    [pipeline] = fake_kfp.pipelines.values()
    [experiment] = fake_kfp.experiments.values()
    assert pipeline["display_name"] == "team" and experiment["display_name"] == "nightly"
    assert experiment["namespace"] == "kubeflow" and kfp_run["service_account"] == "pipeline-runner"

    # again, without --wait: the same pipeline version and experiment; the run goes on alone
    submitted = terminal("pipeline", "run", str(notebook), "-p", "scale", "3", "--json")
    assert submitted.code == 0, submitted.err
    second = json.loads(submitted.out)
    assert second["status"] == "running" and second["orchestrator_url"]
    assert len(fake_kfp.pipelines) == 1 and len(fake_kfp.versions) == 1
    assert len(fake_kfp.experiments) == 1
    wait_for(lambda: fake_kfp.runs[second["orchestrator_run_id"]]["state"] != "RUNNING")
    described = json.loads(terminal("pipeline", "describe", second["id"], "--json").out)
    assert described["status"] == "completed", "the tasks recorded the run's end"
    assert [s["status"] for s in described["steps"]] == ["cached"] * 3

    # a run started from the KFP UI (no stackmagic run id): its tasks record it under KFP's id
    version = next(iter(fake_kfp.versions.values()))
    signed = {"authorization": f"Bearer {TOKEN_CANARY}"}
    code, ui_run = fake_kfp.handle(
        "POST",
        "/apis/v2beta1/runs",
        {},
        signed,
        json.dumps(
            {
                "display_name": "from the UI",
                "experiment_id": experiment["experiment_id"],
                "pipeline_version_reference": {
                    "pipeline_id": pipeline["pipeline_id"],
                    "pipeline_version_id": version["pipeline_version_id"],
                },
                "runtime_config": {"parameters": {"scale": 4.0}},
            }
        ).encode(),
    )
    assert code == 200
    wait_for(lambda: fake_kfp.runs[ui_run["run_id"]]["state"] != "RUNNING")
    ids = {r["id"] for r in json.loads(terminal("pipeline", "runs", "--json").out)}
    [from_ui] = ids - {run["id"], second["id"]}
    recorded = json.loads(terminal("pipeline", "describe", from_ui, "--json").out)
    assert recorded["status"] == "completed" and recorded["parameters"] == {"scale": 4.0}
    assert [s["status"] for s in recorded["steps"]] == ["completed"] * 3

    # a changed notebook is a new version of the same pipeline
    write_notebook(
        notebook,
        "import numpy as np\nimport stackmagic",
        "%%step load\nfeatures = np.arange(10.0) * scale",
        parameters="scale = 5.0",
    )
    fake_kfp.execute = False
    third = terminal("pipeline", "run", str(notebook), "--progress", "lines")
    assert third.code == 0, third.err
    assert len(fake_kfp.pipelines) == 1 and len(fake_kfp.versions) == 2
    [third_id] = set(fake_kfp.runs) - {
        kfp_run["run_id"],
        second["orchestrator_run_id"],
        ui_run["run_id"],
    }
    assert f"Kubeflow run {third_id}: {fake_kfp.url}/#/runs/details/{third_id}" in third.err
    assert [
        line.split() for line in third.out.splitlines() if line.lstrip().startswith("status ")
    ] == [["status", "running"]], third.out

    # KFP ends a run whose pods never started: `describe` asks KFP and says so
    fake_kfp.runs[third_id]["state"] = "FAILED"
    [third_run] = [
        r
        for r in json.loads(terminal("pipeline", "runs", "--json").out)
        if r["orchestrator_run_id"] == third_id
    ]
    assert third_run["status"] == "running"
    described = json.loads(terminal("pipeline", "describe", third_run["id"], "--json").out)
    assert described["status"] == "failed"
    assert described["error"].startswith("the Kubeflow run ended FAILED before its steps recorded")

    text = requests_text(fake_kfp.requests)
    assert DB_CANARY not in text and S3_CANARY not in text, "store secrets never leave"
    for sent in fake_kfp.requests:
        assert sent.headers.get("authorization") == f"Bearer {TOKEN_CANARY}"
        assert TOKEN_CANARY not in sent.path and TOKEN_CANARY.encode() not in sent.body


def test_kfp_api_failures_are_one_line(
    fake_kfp: FakeKfp, kubeflow_notebook: Path, terminal
) -> None:
    from test_team_stacks import closed_port

    notebook = kubeflow_notebook
    fake_kfp.execute = False
    # another submission creates the same new pipeline and version first: 409s, taken in stride
    fake_kfp.race = True
    raced = terminal("pipeline", "run", str(notebook), "--progress", "none")
    assert raced.code == 0, raced.err
    assert len(fake_kfp.pipelines) == 1 and len(fake_kfp.versions) == 1 and len(fake_kfp.runs) == 1
    fake_kfp.race = False
    cases = [
        ([f"--host=http://127.0.0.1:{closed_port()}"], "cannot reach Kubeflow Pipelines at"),
        (["--token=wrong"], "refused to find the pipeline (401: Request header error"),
        (["--namespace=nope"], "(404: Namespace 'nope' not found); check --host"),
    ]
    for change, expected in cases:
        assert terminal("orchestrator", "update", "kf", *change).code == 0
        result = terminal("pipeline", "run", str(notebook), "--progress", "none")
        assert result.code == 2 and result.err.count("\n") == 1, result.err
        assert expected in result.err
        assert terminal("orchestrator", "update", "kf", *remote_flags(fake_kfp.url)[1:]).code == 0
    runs = json.loads(terminal("pipeline", "runs", "--json").out)
    assert [r["status"] for r in runs] == ["failed"] * 3 + ["running"], "a failed start says why"
    assert len(fake_kfp.runs) == 1, "only the raced submission started a run"


def tiny_pipeline(path: Path) -> Path:
    """A pipeline compiled by the kfp SDK: one container task.

    Its functions have no annotations: kfp reads them as the pipeline's outputs.
    """
    from kfp import compiler, dsl

    @dsl.container_component
    def hello():
        return dsl.ContainerSpec(image="alpine:3", command=["echo", "hello"])

    @dsl.pipeline(name="tiny")
    def tiny():
        hello()

    compiler.Compiler().compile(tiny, str(path))
    return path


def test_the_fake_kfp_server_answers_wrong_requests_as_kfp_does(
    fake_kfp: FakeKfp, tmp_path: Path
) -> None:
    """Filters, uploads and pipeline ids from the real kfp client, refused where KFP would."""
    from kfp_server_api.exceptions import ApiException

    from stackmagic.errors import StackmagicError
    from stackmagic.flavors.orchestrators import KubeflowOrchestrator
    from stackmagic.orchestrators.kfp_api import KfpApi

    fake_kfp.execute = False
    api = KfpApi(KubeflowOrchestrator(host=fake_kfp.url, namespace="kubeflow"), token=TOKEN_CANARY)
    package = tiny_pipeline(tmp_path / "tiny.yaml")
    uploaded = {name: api.upload(name, package) for name in ("tiny", "tiny-nightly", "other")}
    assert api.upload("tiny", package) == uploaded["tiny"], "found again by its name, not uploaded"

    def listed(predicate: dict[str, Any]) -> list[str]:
        found = (
            api.client.list_pipelines(
                filter=json.dumps({"predicates": [{"key": "display_name", **predicate}]})
            ).pipelines
            or []
        )
        return sorted(pipeline.display_name for pipeline in found)

    assert listed({"operation": "EQUALS", "stringValue": "tiny"}) == ["tiny"]
    assert listed({"operation": 1, "string_value": "tiny"}) == ["tiny"], "by number, proto name"
    assert listed({"operation": "NOT_EQUALS", "stringValue": "tiny"}) == ["other", "tiny-nightly"]
    assert listed({"operation": "IN", "stringValues": {"values": ["tiny", "other"]}}) == [
        "other",
        "tiny",
    ]
    assert listed({"operation": "IS_SUBSTRING", "stringValue": "tiny"}) == ["tiny", "tiny-nightly"]
    assert listed({"operation": "LESS_THAN", "stringValue": "tiny-"}) == ["other", "tiny"]
    for wrong in (
        {"operation": "LIKE", "stringValue": "tiny"},
        {"operation": "IN", "stringValue": "tiny"},
        {"operation": "EQUALS"},
        {"operation": "EQUALS", "key": "colour", "stringValue": "red"},
    ):
        with pytest.raises(ApiException) as refused:
            listed(wrong)
        assert refused.value.status == 400, wrong

    pipeline_id, version_id = uploaded["tiny"]
    yaml_error, not_a_pipeline = tmp_path / "broken.yaml", tmp_path / "notes.yaml"
    yaml_error.write_text("pipelineInfo: [name: tiny\n")
    not_a_pipeline.write_text("steps: [load, train]\n")
    no_executors = tmp_path / "no-executors.yaml"
    no_executors.write_text(package.read_text().replace("deploymentSpec:", "deployment:"))
    for wrong_package in (yaml_error, not_a_pipeline, no_executors):
        with pytest.raises(ApiException) as refused:
            api.client._upload_api.upload_pipeline_version(
                uploadfile=str(wrong_package), name=wrong_package.stem, pipelineid=pipeline_id
            )
        assert refused.value.status == 400 and "Failed to upload a pipeline version" in str(
            refused.value.body
        ), wrong_package.name
    with pytest.raises(ApiException) as twice:
        api.client._upload_api.upload_pipeline_version(
            uploadfile=str(package),
            name=fake_kfp.versions[version_id]["display_name"],
            pipelineid=pipeline_id,
        )
    assert twice.value.status == 409, "a version name is unique in its pipeline"
    assert len(fake_kfp.versions) == 3, "nothing refused was kept"

    with pytest.raises(ApiException) as unknown:
        api.client.list_pipeline_versions("no-such-pipeline")
    assert unknown.value.status == 404
    experiment_id = api.experiment("nightly")
    assert api.start_run(experiment_id, pipeline_id, version_id, {}, display_name="right")
    for reference, status in (
        ((uploaded["other"][0], version_id), 400),
        (("no-such-pipeline", version_id), 404),
        ((pipeline_id, "no-such-version"), 404),
    ):
        with pytest.raises(StackmagicError) as refused:
            api.start_run(experiment_id, *reference, {}, display_name="wrong")
        assert f"refused to start the run ({status}: Failed to create a run" in str(refused.value)
    assert len(fake_kfp.runs) == 1
