"""Pipeline runs mirrored to Weights & Biases, with the real W&B client.

Offline, W&B writes each run to a folder as a log of protobuf records (what
``wandb sync`` uploads later): the tests read that log back. Online, the client
talks to a FAKE W&B server (tests/fake_wandb.py) on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import BIN, Result, wait_for
from fake_http import serve
from fake_wandb import FakeWandb
from wandb_records import offline_run

from notebooks import write_notebook
from stackmagic.flavors.experiment_trackers import WandbTracker
from stackmagic.stores.artifacts import ArtifactStore
from stackmagic.stores.metadata.records import MetricPoint, RunRecord, StepRecord
from stackmagic.trackers.base import StepNotebooks

pytestmark = pytest.mark.kernel

#: long enough for W&B's own check of a key's shape (40 characters or more)
CANARY = "CANARY-wandb-key-" + "0123456789" * 3
TRAIN = """%%step train
import stackmagic
loss = 1.0
for epoch in range(epochs):
    loss = loss * lr
    stackmagic.log_metric('loss', loss, step=epoch)
    stackmagic.log_metric('accuracy', 1 - loss, step=epoch)
model = [row * lr for row in data]"""


@pytest.fixture(autouse=True)
def wandb_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """W&B's per-user folders (staged artifacts, cache, settings) inside the test's folder."""
    folder = tmp_path / "wandb-user"
    for variable, name in (
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_CONFIG_DIR", "config"),
    ):
        monkeypatch.setenv(variable, str(folder / name))
    return folder


@pytest.fixture
def notebook(project: Path, terminal: Callable[..., Result]) -> Path:
    """A small training notebook: parameters, a step that prepares data, one that trains
    and logs a loss and an accuracy per epoch."""
    assert terminal("init").code == 0
    return write_notebook(
        project / "train.ipynb",
        "%load_ext stackmagic",
        "%%step prepare\ndata = list(range(n))",
        TRAIN,
        parameters="n = 4\nepochs = 3\nlr = 0.5",
    )


def use_tracker(terminal: Callable[..., Result], *options: str) -> None:
    for command in (
        ["experiment-tracker", "register", "wb", "--type=wandb", *options],
        [
            "stack",
            "register",
            "tracked",
            "-m",
            "default",
            "-a",
            "default",
            "-o",
            "default",
            "-e",
            "wb",
        ],
        ["stack", "set", "tracked"],
    ):
        done = terminal(*command)
        assert done.code == 0, done.err


#: a run of the notebook, lr set as a user does
RUN = ["pipeline", "run", "-p", "lr", "0.25", "--json"]


def run_pipeline(terminal: Callable[..., Result], notebook: Path) -> tuple[dict[str, Any], str]:
    done = terminal(*RUN, str(notebook))
    assert done.code == 0, done.err
    return json.loads(done.out), done.err


def plotted(history: list[dict[str, Any]], step: str) -> list[dict[str, Any]]:
    """A step's history rows, W&B's own columns left out."""
    return [
        {key: value for key, value in row.items() if key.startswith(f"{step}/")}
        for row in history
        if f"{step}/step" in row
    ]


EPOCHS = [
    {"train/step": 0, "train/loss": 0.25, "train/accuracy": 0.75},
    {"train/step": 1, "train/loss": 0.0625, "train/accuracy": 0.9375},
    {"train/step": 2, "train/loss": 0.015625, "train/accuracy": 0.984375},
]


def test_an_offline_run_is_written_whole_a_cached_rerun_says_so_and_notebooks_may_be_links(
    project: Path, notebook: Path, terminal: Callable[..., Result]
) -> None:
    use_tracker(terminal, "--mode=offline", "--directory=tracked")
    first, err = run_pipeline(terminal, notebook)
    assert "not mirrored" not in err and "wandb" not in err.lower(), err
    (folder,) = (project / "tracked" / "wandb").glob(f"offline-run-*-{first['id']}")
    assert first["tracker"] == {
        "url": str(project / "tracked" / "wandb" / f"offline-run-*-{first['id']}"),
        "run_id": first["id"],
        "note": None,
    }

    written = offline_run(folder)
    assert (written["name"], written["group"], written["job_type"], written["project"]) == (
        first["id"],
        "train",
        "pipeline",
        "train",
    )
    assert {k: written["config"][k] for k in ("n", "epochs", "lr")} == {
        "n": 4,
        "epochs": 3,
        "lr": 0.25,
    }
    assert written["config"]["stackmagic.run_id"] == first["id"]
    assert written["config"]["stackmagic.stack"] == "tracked"
    assert plotted(written["history"], "train") == EPOCHS
    assert written["summary"]["train/loss"] == 0.015625
    assert written["summary"]["train/cache"] == written["summary"]["prepare/cache"] == "ran"
    uploaded = {"prepare.ipynb": "", "train.ipynb": ""}
    assert written["artifacts"] == [("notebooks", "train-notebooks", uploaded)]
    assert written["exit_code"] == 0

    again, _ = run_pipeline(terminal, notebook)
    assert [step["status"] for step in again["steps"]] == ["cached", "cached"]
    (folder,) = (project / "tracked" / "wandb").glob(f"offline-run-*-{again['id']}")
    cached = offline_run(folder)
    assert cached["summary"]["train/cache"] == "cached"
    assert cached["summary"]["train/cached_from"] == f"{first['id']}/train"
    assert cached["summary"]["train/loss"] == 0.015625, "a cached step keeps the metrics it had"

    assert terminal("experiment-tracker", "update", "wb", "--notebooks=link").code == 0
    done = terminal("pipeline", "run", str(notebook), "-p", "epochs", "2", "--json")
    linked = json.loads(done.out)
    (folder,) = (project / "tracked" / "wandb").glob(f"offline-run-*-{linked['id']}")
    executed = Path(linked["steps"][1]["notebook"])
    assert offline_run(folder)["artifacts"] == [
        ("notebooks", "train-notebooks", {"train.ipynb": executed.as_uri()})
    ]


@pytest.fixture
def fake_wandb() -> Iterator[FakeWandb]:
    yield from serve(FakeWandb(CANARY, entity="lab"))


def environments_holding(secret: str) -> list[str]:
    """The command lines of the processes whose environment holds ``secret``."""
    holding = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            if secret.encode() in (process / "environ").read_bytes():
                holding.append((process / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:  # gone, or not ours to read
            continue
    return holding


def traced(command: list[str], cwd: Path, connections: Path) -> subprocess.CompletedProcess[str]:
    """``command`` run with every program it and its children start, and every socket they
    connect, written down."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    prefix = [strace, "-f", "-qq", "-e", "trace=connect,execve", "-o", str(connections)]
    return subprocess.run([*prefix, *command], cwd=cwd, capture_output=True, text=True, timeout=120)


def programs(trace: Path) -> list[str]:
    """The programs started, with their arguments, in an strace log."""
    return re.findall(r"execve\((.*)\) = 0", trace.read_text())


def addresses(connections: Path) -> set[str]:
    """The IP addresses connected to, in an strace log of ``connect`` calls."""
    found = re.findall(
        r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"', connections.read_text()
    )
    return {v4 or v6 for v4, v6 in found}


def test_an_online_run_reaches_wandb_with_the_key_only_in_the_authorization_header(
    project: Path,
    notebook: Path,
    terminal: Callable[..., Result],
    fake_wandb: FakeWandb,
    wandb_folders: Path,
    tmp_path: Path,
) -> None:
    use_tracker(terminal, f"--base-url={fake_wandb.url}", f"--api-key={CANARY}")
    leaks: list[str] = []
    answer = fake_wandb.handle

    def handle(*request: Any) -> Any:  # while W&B's service talks to the server
        leaks.extend(environments_holding(CANARY))
        return answer(*request)

    fake_wandb.handle = handle  # type: ignore[method-assign]
    connections = tmp_path / "connections.txt"
    done = traced([str(BIN / "stackmagic"), *RUN, str(notebook)], project, connections)
    assert done.returncode == 0, done.stderr
    assert "wandb" not in done.stderr.lower(), done.stderr
    ran = json.loads(done.stdout)
    assert ran["tracker"] == {
        "url": f"{fake_wandb.url}/lab/train/runs/{ran['id']}",
        "run_id": ran["id"],
        "note": None,
    }

    mirrored = fake_wandb.runs["train", ran["id"]]
    assert (mirrored.name, mirrored.group, mirrored.job_type) == (ran["id"], "train", "pipeline")
    assert {k: mirrored.config[k] for k in ("n", "epochs", "lr")} == {
        "n": 4,
        "epochs": 3,
        "lr": 0.25,
    }
    assert plotted(mirrored.history, "train") == EPOCHS
    started, ended = (datetime.fromisoformat(ran[when]) for when in ("started_at", "ended_at"))
    logged = [datetime.fromtimestamp(row["_timestamp"], timezone.utc) for row in mirrored.history]
    assert all(started <= when <= ended for when in logged), "rows are dated when logged"
    assert mirrored.summary["train/accuracy"] == 0.984375
    assert mirrored.summary["train/cache"] == "ran"
    assert mirrored.exit_code == 0
    (notebooks,) = fake_wandb.artifacts.values()
    assert (notebooks.type, notebooks.committed) == ("notebooks", True)
    assert notebooks.manifest is not None
    assert set(notebooks.manifest["contents"]) == {"prepare.ipynb", "train.ipynb"}
    for step in ran["steps"]:
        assert notebooks.files[f"{step['name']}.ipynb"] == Path(step["notebook"]).read_bytes()

    for request in fake_wandb.requests:
        headers = {k: v for k, v in request.headers.items() if k != "authorization"}
        assert CANARY not in f"{request.path} {headers} {request.body.decode('utf-8', 'replace')}"
    assert leaks == [], "the API key was in a process's environment"
    files = [p for p in [*wandb_folders.rglob("*"), *project.rglob("*")] if p.is_file()]
    assert [p for p in files if CANARY.encode() in p.read_bytes()] == []
    assert addresses(connections) == {"127.0.0.1"}
    (service,) = [started for started in programs(connections) if "wandb-core" in started]
    assert "--no-observability" in service, "W&B's service may send error reports to W&B"
    assert not [started for started in programs(connections) if '["git", ' in started]


@pytest.mark.parametrize("server", ["wrong key", "closed port"])
def test_a_tracker_that_refuses_or_is_down_costs_one_line_and_the_run_goes_on(
    project: Path,
    notebook: Path,
    terminal: Callable[..., Result],
    fake_wandb: FakeWandb,
    tmp_path: Path,
    server: str,
) -> None:
    if server == "wrong key":
        url, key, reason = (
            fake_wandb.url,
            "other" * 8,
            "refused the API key (user is not logged in)",
        )
    else:
        url, key, reason = "http://127.0.0.1:9", CANARY, "is unreachable"
    use_tracker(terminal, f"--base-url={url}", f"--api-key={key}", "--entity=lab")
    connections = tmp_path / "connections.txt"
    done = traced([str(BIN / "stackmagic"), *RUN, str(notebook)], project, connections)
    exited = datetime.now(timezone.utc)

    assert done.returncode == 0, done.stderr
    ran = json.loads(done.stdout)
    assert ran["status"] == "completed"
    (line,) = [line for line in done.stderr.splitlines() if re.search("mirror|wandb|W&B", line)]
    assert line.startswith(f"stackmagic: run {ran['id']} not mirrored to the wandb tracker 'wb': ")
    assert f"W&B at {url} {reason}" in line
    assert CANARY not in done.stderr
    described = json.loads(terminal("pipeline", "describe", ran["id"], "--json").out)
    assert f"W&B at {url} {reason}" in described["tracker"]["note"]
    mirroring = exited - datetime.fromisoformat(described["ended_at"])
    assert mirroring.total_seconds() < 10, f"giving up on the tracker took {mirroring}"
    assert addresses(connections) == {"127.0.0.1"}


def wandb_services() -> list[str]:
    """W&B services this process started that still run."""
    running = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            state, parent = (process / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            command = (process / "cmdline").read_bytes()
        except OSError:
            continue
        if int(parent) == os.getpid() and state != "Z" and b"wandb-core" in command:
            running.append(command.replace(b"\0", b" ").decode())
    return running


def failed_run(fake: FakeWandb, tmp_path: Path) -> None:
    """A run that failed, its values logged without ``step=``, mirrored from this process."""
    config = WandbTracker(base_url=fake.url, api_key="stored as a secret", entity="lab")
    tracker = config.tracker(lambda option: CANARY)
    now = datetime.now(timezone.utc)
    step = StepRecord("fit", "failed", now, now, None, None, 1, "ValueError: no rows", None)
    step.metric_history = [MetricPoint("loss", 0.5, None, now), MetricPoint("loss", 0.25)]
    step.metrics = [("loss", 0.5), ("loss", 0.25)]
    run = RunRecord(
        id="20260101-000000-abcdef",
        pipeline="fit",
        notebook="fit.ipynb",
        status="failed",
        started_at=now,
        ended_at=now,
        stack_name="tracked",
        stack={},
        bundle_uri="",
        options={},
        error="step fit failed: ValueError: no rows\n...",
        parameters={"lr": 0.1},
        overridden=[],
        steps=[step],
    )
    notebooks = StepNotebooks(ArtifactStore(str(tmp_path / "artifacts")), tmp_path, upload=True)
    tracker.run_ended(run, tracker.start_run(run), notebooks)


def test_a_long_lived_process_keeps_no_wandb_service_and_its_environment_as_it_was(
    fake_wandb: FakeWandb, tmp_path: Path
) -> None:
    """A Jupyter kernel or the server records many runs: each leaves nothing behind."""
    before = dict(os.environ)
    failed_run(fake_wandb, tmp_path)

    mirrored = fake_wandb.runs["fit", "20260101-000000-abcdef"]
    assert plotted(mirrored.history, "fit") == [
        {"fit/step": 0, "fit/loss": 0.5},
        {"fit/step": 1, "fit/loss": 0.25},
    ], "values logged without step= keep the order they were logged in"
    assert mirrored.summary["fit/cache"] == "failed"
    assert (mirrored.exit_code, mirrored.notes) == (1, "step fit failed: ValueError: no rows")
    wait_for(lambda: not wandb_services(), timeout=10, what="W&B's service to stop")
    assert dict(os.environ) == before


def test_a_notebook_with_its_own_wandb_run_keeps_it_running(
    fake_wandb: FakeWandb, tmp_path: Path
) -> None:
    """Mirroring from a process that has a W&B run of its own writes the pipeline's run
    beside it, and leaves W&B running for it."""
    import wandb

    own = wandb.init(mode="offline", dir=tmp_path, settings=wandb.Settings(silent=True))
    try:
        failed_run(fake_wandb, tmp_path)
        assert fake_wandb.runs["fit", "20260101-000000-abcdef"].exit_code == 1
        assert wandb.run is own
        own.log({"accuracy": 0.5})
    finally:
        own.finish()
        wandb.teardown()
