"""The MLflow experiment tracker, against a real ``mlflow server`` (tests/mlflow_server.py).

Runs go through the real CLI (local orchestrator, and kfp.local whose tasks log
their own steps); everything is read back through mlflow's own client.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import Result
from mlflow_server import QUIET, MLflowServer, mlflow_server, running_mlflow  # noqa: F401
from services import free_port

from notebooks import write_notebook
from stackmagic.open_stack import OpenStack
from stackmagic.registry import Registry

pytestmark = pytest.mark.kernel

TOKEN_CANARY = "CANARY-mlflow-token-" + secrets.token_hex(6)
PASSWORD_CANARY = "CANARY-mlflow-password-" + secrets.token_hex(6)


@pytest.fixture(autouse=True)
def quiet_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """No mlflow usage reports from this process or the ones it starts."""
    for name, value in QUIET.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def client(mlflow_server: MLflowServer) -> Any:  # noqa: F811
    from mlflow import MlflowClient

    return MlflowClient(mlflow_server.url)


def tutorial(folder: Path) -> Path:
    """A notebook as a tutorial writes one: data, a model trained epoch by epoch, its score."""
    return write_notebook(
        folder / "train.ipynb",
        "import numpy as np\nimport stackmagic",
        "%%step prepare\nrng = np.random.default_rng(seed)\n"
        "features = rng.normal(size=(200, 3))\n"
        "labels = (features @ np.array([1.5, -2.0, 0.5]) > 0).astype(float)",
        "%%step train --after prepare\nweights = np.zeros(3)\n"
        "for epoch in range(epochs):\n"
        "    predicted = 1 / (1 + np.exp(-(features @ weights)))\n"
        "    weights -= lr * features.T @ (predicted - labels) / len(labels)\n"
        "    loss = float(np.mean((predicted - labels) ** 2))\n"
        "    stackmagic.log_metric('loss', loss, step=epoch)\n"
        "accuracy = float(np.mean(((features @ weights) > 0) == labels))\n"
        "stackmagic.log_metric('accuracy', accuracy)",
        parameters="seed = 7\nepochs = 3\nlr = 0.5",
    )


def one_step(folder: Path) -> Path:
    """One step, which prints its kernel's environment (values included)."""
    return write_notebook(
        folder / "small.ipynb", "import os", "%%step only\nprint(sorted(os.environ.items()))"
    )


def tracked_stack(terminal: Callable[..., Result], uri: str, *options: str) -> None:
    """The active stack's tracker: ``mlf``, on ``uri``."""
    for words in (
        ["experiment-tracker", "register", "mlf", "--type=mlflow", f"--tracking-uri={uri}"],
        ["stack", "update", "default", "-e", "mlf"],
    ):
        words += options if words[0] == "experiment-tracker" else []
        result = terminal(*words)
        assert result.code == 0, result.err


def experiment_named(*words: str) -> str:
    return "-".join([*words, secrets.token_hex(4)])


def describe(terminal: Callable[..., Result], run: str = "latest") -> dict[str, Any]:
    result = terminal("pipeline", "describe", run, "--json")
    assert result.code == 0, result.err
    return dict(json.loads(result.out))


def children(client: Any, parent: Any) -> dict[str, Any]:
    """The nested runs of ``parent``, by step."""
    found = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    by_step = {run.data.tags["stackmagic.step"]: run for run in found}
    assert len(by_step) == len(found), "one nested run per step"
    return by_step


def history(client: Any, run: Any, metric: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, metric)]


def printed(client: Any, step: Any, folder: Path) -> str:
    """What the step printed, read from the executed notebook uploaded with its nested run."""
    name = step.data.tags["stackmagic.step"]
    path = client.download_artifacts(step.info.run_id, f"notebook/{name}.ipynb", str(folder))
    cells = nbformat.read(path, as_version=4).cells
    return "".join(output.get("text", "") for cell in cells for output in cell.get("outputs", []))


def test_a_run_and_its_cached_rerun_are_mirrored_with_metrics_and_notebooks(
    terminal: Callable[..., Result],
    project: Path,
    tmp_path: Path,
    client: Any,
    mlflow_server: MLflowServer,
) -> None:
    experiment = experiment_named("tutorial")
    assert terminal("init").code == 0
    tracked_stack(terminal, mlflow_server.url, f"--experiment={experiment}")
    notebook = tutorial(project)

    first = terminal(
        "pipeline", "run", str(notebook), "-p", "epochs", "4", "--progress", "none", "--json"
    )
    assert first.code == 0, first.err
    assert "not mirrored" not in first.err
    assert json.loads(first.out)["status"] == "completed", "mlflow printed nothing on stdout"
    record = describe(terminal)
    [parent] = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id],
        f"attributes.run_name = '{record['id']}'",
    )
    assert record["tracker"]["url"] == (
        f"{mlflow_server.url}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}"
    )
    assert parent.info.run_name == record["id"] and parent.info.status == "FINISHED"
    assert parent.data.params == {"seed": "7", "epochs": "4", "lr": "0.5"}
    assert parent.data.tags["stackmagic.pipeline"] == record["pipeline"]
    assert parent.data.tags["stackmagic.stack"] == "default"

    steps = children(client, parent)
    assert sorted(steps) == ["prepare", "train"]
    train = steps["train"]
    assert train.info.run_name == "train" and train.info.status == "FINISHED"
    assert train.data.tags["stackmagic.cache"] == "ran"
    assert train.data.tags["stackmagic.reason"] == record["steps"][1]["reason"]
    logged = record["steps"][1]["metrics"]
    losses = [(m["step"], pytest.approx(m["value"])) for m in logged if m["name"] == "loss"]
    assert [step for step, _ in losses] == [0, 1, 2, 3], "every epoch, at its step"
    assert history(client, train, "loss") == losses
    [accuracy] = [m["value"] for m in logged if m["name"] == "accuracy"]
    assert history(client, train, "accuracy") == [(0, pytest.approx(accuracy))]
    assert [a.path for a in client.list_artifacts(train.info.run_id, "notebook")] == [
        "notebook/train.ipynb"
    ]
    downloaded = client.download_artifacts(train.info.run_id, "notebook/train.ipynb", str(tmp_path))
    executed = nbformat.read(downloaded, as_version=4)
    assert any("stackmagic.log_metric" in cell.source for cell in executed.cells)
    assert any(cell.get("execution_count") for cell in executed.cells if cell.cell_type == "code")

    again = terminal("pipeline", "run", str(notebook), "-p", "epochs", "4", "--progress", "none")
    assert again.code == 0, again.err
    rerun = describe(terminal)
    assert {s["status"] for s in rerun["steps"]} == {"cached"}
    [second] = client.search_runs(
        [parent.info.experiment_id], f"attributes.run_name = '{rerun['id']}'"
    )
    assert second.info.run_id != parent.info.run_id and second.info.status == "FINISHED"
    for name, step in children(client, second).items():
        assert step.data.tags["stackmagic.cache"] == "cached"
        assert step.data.tags["stackmagic.cached_from"] == f"{record['id']}/{name}"
        assert step.data.tags["stackmagic.cached_from_mlflow_run"] == steps[name].info.run_id
        assert step.data.metrics == {}, "its numbers are on the run that computed them"
        assert client.list_artifacts(step.info.run_id) == []


@pytest.fixture
def kubeflow_local(terminal: Callable[..., Result], project: Path) -> Path:
    """A project whose active stack runs pipelines with kfp.local on the local stores."""
    for words in (
        ["init"],
        ["orchestrator", "register", "kfl", "--type=kubeflow", "--mode=local"],
        ["stack", "update", "default", "-o", "kfl"],
    ):
        assert terminal(*words).code == 0
    return project


def test_kfp_local_tasks_log_their_steps_and_never_see_the_token(
    terminal: Callable[..., Result],
    kubeflow_local: Path,
    tmp_path: Path,
    client: Any,
    mlflow_server: MLflowServer,
) -> None:
    experiment = experiment_named("kfp")
    tracked_stack(
        terminal, mlflow_server.url, f"--experiment={experiment}", f"--token={TOKEN_CANARY}"
    )
    notebook = write_notebook(
        kubeflow_local / "tasks.ipynb",
        "import os\nimport sys\nimport stackmagic",
        # the task mirrors its step; the step's kernel has no mlflow of it
        "%%step first\nprint('mlflow loaded:', 'mlflow' in sys.modules)\n"
        "stackmagic.log_metric('rows', 10)",
        # the first task's nested run is there while the run goes on: its task logged it
        "%%step second --after first\nfrom mlflow import MlflowClient\n"
        "seen = MlflowClient(server).search_runs(\n"
        f"    [MlflowClient(server).get_experiment_by_name({experiment!r}).experiment_id],\n"
        "    \"tags.`stackmagic.step` = 'first'\")\n"
        "parent = MlflowClient(server).get_run(seen[0].data.tags['mlflow.parentRunId'])\n"
        "print('first step mirrored:', len(seen), 'run', parent.info.status)\n"
        "print(sorted(os.environ.items()))",
        parameters=f"server = {mlflow_server.url!r}",
    )
    result = terminal("pipeline", "run", str(notebook), "--progress", "none")
    assert result.code == 0, result.err
    assert "not mirrored" not in result.err
    record = describe(terminal)
    [parent] = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id],
        f"attributes.run_name = '{record['id']}'",
    )
    steps = children(client, parent)
    assert sorted(steps) == ["first", "second"] and parent.info.status == "FINISHED"
    assert history(client, steps["first"], "rows") == [(0, 10.0)]
    said = printed(client, steps["first"], tmp_path)
    assert "mlflow loaded: False" in said, said
    said = printed(client, steps["second"], tmp_path)
    assert "first step mirrored: 1 run RUNNING" in said and "'PATH'" in said, said
    assert "STACKMAGIC_EXPERIMENT_TRACKER_TOKEN" not in said and TOKEN_CANARY not in said

    exported = terminal(
        "pipeline", "export", str(notebook), "--to", "kubeflow", "-o", str(tmp_path / "p.yaml")
    )
    assert exported.code == 0, exported.err
    places = {
        str(path): path.read_bytes()
        for folder in (tmp_path, mlflow_server.folder)  # the project, kfp.local's, MLflow's
        for path in folder.rglob("*")
        if path.is_file() and path.name != "secrets.json"
    }
    looked_at = {Path(place).name for place in places}
    assert {"p.yaml", "metadata.db", "kfp-local.log", "second.ipynb", "mlflow.db"} <= looked_at
    sightings = [place for place, data in places.items() if TOKEN_CANARY.encode() in data]
    assert sightings == [], "the token is only in the user's secrets file"
    assert TOKEN_CANARY not in result.out + result.err + exported.out + exported.err


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections and never answers: a server that hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.mark.parametrize("down", ["closed", "silent"])
def test_a_tracker_out_of_reach_costs_one_line_and_the_run_completes(
    terminal: Callable[..., Result], project: Path, request: pytest.FixtureRequest, down: str
) -> None:
    port = free_port() if down == "closed" else request.getfixturevalue("silent_port")
    uri = f"http://127.0.0.1:{port}"
    assert terminal("init").code == 0
    tracked_stack(terminal, uri, f"--token={TOKEN_CANARY}", "--timeout=2")
    started = time.monotonic()
    result = terminal("pipeline", "run", str(one_step(project)), "--progress", "none")
    assert result.code == 0, result.err
    assert time.monotonic() - started < 20, (
        "the tracker cost about --timeout, no retries for minutes"
    )
    [line] = [line for line in result.err.splitlines() if "not mirrored" in line]
    why = {"closed": "connection refused", "silent": "no answer in time"}[down]
    assert f"cannot reach the MLflow tracking server at {uri} ({why})" in line
    record = describe(terminal)
    assert record["status"] == "completed" and record["steps"][0]["status"] == "completed"
    assert record["tracker"]["url"] is None
    assert record["tracker"]["note"] in line
    # the tracker's client was made before the step's kernel started: the kernel has no token
    executed = (project / ".stackmagic" / "artifacts").rglob("only.ipynb")
    assert "'PATH'" in next(executed).read_text(), "the step printed its environment"
    assert TOKEN_CANARY not in result.out + result.err
    leaks = [
        p for p in project.rglob("*") if p.is_file() and TOKEN_CANARY.encode() in p.read_bytes()
    ]
    assert leaks == []


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[MLflowServer]:
    with running_mlflow(tmp_path / "mlflow-auth", auth=True) as server:
        yield server


def test_refused_credentials_cost_one_line_and_right_ones_are_sent_without_the_env(
    terminal: Callable[..., Result], project: Path, auth_server: MLflowServer
) -> None:
    assert terminal("init").code == 0
    notebook = one_step(project)
    tracked_stack(terminal, auth_server.url, "--username=admin", f"--password={PASSWORD_CANARY}")
    refused = terminal("pipeline", "run", str(notebook), "--progress", "none")
    assert refused.code == 0, refused.err
    [line] = [line for line in refused.err.splitlines() if "not mirrored" in line]
    assert "refused the credentials (HTTP 401)" in line and "--password" in line
    assert describe(terminal)["tracker"]["note"] in line
    assert PASSWORD_CANARY not in refused.out + refused.err

    assert auth_server.admin_password
    fixed = terminal(
        "experiment-tracker", "update", "mlf", f"--password={auth_server.admin_password}"
    )
    assert fixed.code == 0, fixed.err
    signed_in = terminal("pipeline", "run", str(notebook), "--progress", "none")
    assert signed_in.code == 0 and "not mirrored" not in signed_in.err, signed_in.err
    assert describe(terminal)["tracker"]["url"].startswith(f"{auth_server.url}/#/experiments/")


def test_steps_recorded_without_the_tracker_are_mirrored_at_the_end_once(
    terminal: Callable[..., Result], project: Path, client: Any, mlflow_server: MLflowServer
) -> None:
    assert terminal("init").code == 0
    notebook = write_notebook(
        project / "checks.ipynb",
        "import stackmagic",
        "%%step load\nrows = list(range(5))\nstackmagic.log_metric('rows', len(rows))",
        "%%step check --after load\nassert len(rows) > 50, f'too few rows: {len(rows)}'",
    )
    failed = terminal("pipeline", "run", str(notebook), "--progress", "none")
    assert failed.code == 1, failed.err
    experiment = experiment_named("late")
    tracked_stack(terminal, mlflow_server.url, f"--experiment={experiment}", "--notebooks=link")
    record = describe(terminal)
    with OpenStack.open(Registry.open()) as opened:
        for _ in range(2):  # the run's end, told twice: no step is mirrored twice
            opened.metadata.mirror.run_ended(opened.metadata, record["id"])

    [parent] = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id],
        f"attributes.run_name = '{record['id']}'",
    )
    assert parent.info.status == "FAILED"
    assert parent.data.tags["stackmagic.error"].startswith("step 'check' failed")
    steps = children(client, parent)
    assert {name: run.info.status for name, run in steps.items()} == {
        "load": "FINISHED",
        "check": "FAILED",
    }
    assert steps["check"].data.tags["stackmagic.cache"] == "failed"
    assert "too few rows: 5" in steps["check"].data.tags["stackmagic.error"]
    assert history(client, steps["load"], "rows") == [(0, 5.0)]
    for step, run in zip(record["steps"], (steps["load"], steps["check"])):
        assert run.data.tags["stackmagic.notebook_uri"] == step["notebook"], "linked"
        assert client.list_artifacts(run.info.run_id) == [], "not uploaded"
    assert describe(terminal)["tracker"]["run_id"] == parent.info.run_id


def test_a_run_whose_process_died_ends_failed_in_mlflow_too(
    terminal: Callable[..., Result], project: Path, client: Any, mlflow_server: MLflowServer
) -> None:
    from sqlalchemy import update

    from stackmagic.stores.metadata import this_runner
    from stackmagic.stores.models import Run, utcnow

    assert terminal("init").code == 0
    experiment = experiment_named("lost")
    tracked_stack(terminal, mlflow_server.url, f"--experiment={experiment}")
    with OpenStack.open(Registry.open()) as opened:
        opened.metadata.create_run(
            run_id="20261130-120000-00dead",
            pipeline="lost",
            notebook="lost.ipynb",
            stack_name="default",
            stack=opened.snapshot(),
            bundle_uri="b",
            bundle_hash="h",
            options={},
            parameters={"lr": 0.1},
            overridden=[],
            steps=["load"],
        )
        parent_id = opened.metadata.run("20261130-120000-00dead").tracker_run_id
        assert client.get_run(parent_id).info.status == "RUNNING"
        here = this_runner().identity()
        identity = {**here, "started": here["started"] - 1}  # its PID is a later process's now
        with opened.metadata.engine.begin() as connection:
            connection.execute(update(Run).values(runner_identity=identity, heartbeat_at=utcnow()))
        assert opened.metadata.run("20261130-120000-00dead").status == "failed", "found abandoned"
    parent = client.get_run(parent_id)
    assert parent.info.status == "FAILED"
    assert parent.data.tags["stackmagic.error"].startswith("abandoned: the process running it")


def test_a_run_the_tracker_missed_is_whole_there_once_its_end_is_mirrored(
    terminal: Callable[..., Result], project: Path, client: Any, mlflow_server: MLflowServer
) -> None:
    assert terminal("init").code == 0
    tracked_stack(terminal, f"http://127.0.0.1:{free_port()}", "--timeout=2")
    result = terminal("pipeline", "run", str(tutorial(project)), "--progress", "none")
    assert result.code == 0 and "not mirrored" in result.err, result.err
    assert describe(terminal)["tracker"]["note"]

    experiment = experiment_named("caught-up")
    for words in (
        ["experiment-tracker", "update", "mlf", f"--tracking-uri={mlflow_server.url}"],
        ["experiment-tracker", "update", "mlf", f"--experiment={experiment}"],
    ):
        assert terminal(*words).code == 0
    record = describe(terminal)
    with OpenStack.open(Registry.open()) as opened:  # as a process that records its end does
        opened.metadata.mirror.run_ended(opened.metadata, record["id"])
    record = describe(terminal)
    assert record["tracker"]["note"] is None, "the note said it was missing; it is there now"
    assert record["tracker"]["url"].startswith(mlflow_server.url)
    [parent] = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id],
        f"attributes.run_name = '{record['id']}'",
    )
    assert parent.info.status == "FINISHED"
    assert set(children(client, parent)) == {"prepare", "train"}
