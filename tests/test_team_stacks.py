"""Team stacks end to end: MariaDB or PostgreSQL tracking, S3, GCS and Azure buckets for artifacts.

Everything here is real: the database servers of the machine, the storage
emulators started by tests/services.py, the ``stackmagic`` console script and
real kernels running the steps.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import BIN, Result
from services import DB_CANARY, S3_CANARY, Database
from sqlalchemy import create_engine, text
from team import bucket_options, register_team_stack, secret_sightings, team_notebook

from notebooks import write_notebook

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("kind", ["s3", "gcs", "azure"])
def test_a_pipeline_runs_on_mysql_and_a_bucket_and_reads_back(
    kind: str,
    team_database: Database,
    terminal,
    project: Path,
    home: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    url, flags, bucket = bucket_options(kind, request)
    register_team_stack(terminal, team_database, flags)
    said: list[Result] = []

    def run(*words: str) -> Result:
        said.append(result := terminal(*words))
        assert result.code == 0, result.err
        return result

    finished = json.loads(
        run("pipeline", "run", str(team_notebook(project)), "-p", "scale", "3", "--json").out
    )
    assert finished["status"] == "completed"
    assert [step["status"] for step in finished["steps"]] == ["completed"] * 3

    listed = json.loads(run("pipeline", "runs", "--json").out)
    assert [r["id"] for r in listed] == [finished["id"]] and listed[0]["stack"] == "team"
    assert "metrics" not in listed[0]["steps"][1], "a listing never shows a step's metrics as none"
    described = json.loads(run("pipeline", "describe", finished["id"][:12], "--json").out)
    train = described["steps"][1]
    assert train["metrics"] == [{"name": "mean", "value": pytest.approx(1498.5)}]
    assert train["outputs"]["weights"]["uri"].startswith(url + "/team/")
    assert train["notebook"].startswith(url + "/") and bucket.exists(train["notebook"])
    loaded = run("pipeline", "load", "latest", "report.summary")
    assert "summary  {'scale': 3, 'weights': 1498.5}" in loaded.out
    summary_uri = json.loads(run("pipeline", "load", "latest", "report.summary", "--json").out)
    assert bucket.load(summary_uri["summary"]["uri"]) == {"weights": 1498.5, "scale": 3}
    assert bucket.find(url + "/_bundles"), "the bundle is kept in the bucket"
    assert not (project / ".stackmagic" / "artifacts").exists(), "nothing went to the local store"

    # a cached re-run on the team stores: every step from the cache
    again = json.loads(
        run("pipeline", "run", str(team_notebook(project)), "-p", "scale", "3", "--json").out
    )
    assert [step["status"] for step in again["steps"]] == ["cached"] * 3

    if kind == "s3":
        leaks = secret_sightings([DB_CANARY, S3_CANARY], tmp_path, bucket, team_database, said)
        assert leaks == [], f"a secret was written out: {leaks}"


def test_several_pipelines_at_once_on_one_database_and_bucket_lose_nothing(
    team_database: Database, terminal, project: Path, request: pytest.FixtureRequest
) -> None:
    _, flags, bucket = bucket_options("s3", request)
    register_team_stack(terminal, team_database, flags)
    notebook = team_notebook(project)
    runners = [
        subprocess.Popen(
            [
                str(BIN / "stackmagic"),
                "pipeline",
                "run",
                str(notebook),
                "-p",
                "scale",
                str(scale),
                "--json",
                "--progress",
                "none",
            ],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for scale in (1, 2, 3, 4)
    ]
    results = [runner.communicate(timeout=300) for runner in runners]
    assert [runner.returncode for runner in runners] == [0] * 4, [err for _, err in results]
    runs = json.loads(terminal("pipeline", "runs", "--json").out)
    assert len(runs) == 4 and {r["status"] for r in runs} == {"completed"}
    for out, _ in results:
        finished = json.loads(out)
        scale = finished["parameters"]["scale"]
        loaded = json.loads(
            terminal("pipeline", "load", finished["id"], "report.summary", "--json").out
        )
        assert bucket.load(loaded["summary"]["uri"]) == {"weights": 499.5 * scale, "scale": scale}


def test_a_killed_run_is_shown_failed_not_running(
    team_database: Database, terminal, project: Path, request: pytest.FixtureRequest
) -> None:
    _, flags, _ = bucket_options("s3", request)
    register_team_stack(terminal, team_database, flags)
    notebook = write_notebook(
        project / "slow.ipynb", "%%step wait\nimport time\ntime.sleep(300)\nx = 1"
    )
    runner = subprocess.Popen(
        [str(BIN / "stackmagic"), "pipeline", "run", str(notebook), "--progress", "lines"],
        cwd=project,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in runner.stderr:
            if "wait: running" in line:
                break
        assert json.loads(terminal("pipeline", "runs", "--json").out)[0]["status"] == "running"
        family = [runner.pid, *(child.pid for child in psutil.Process(runner.pid).children(True))]
        for pid in family:  # the runner and its kernels die at once, as when a machine is lost
            psutil.Process(pid).kill()
        runner.wait(timeout=30)
    finally:
        runner.kill()
    runs = json.loads(terminal("pipeline", "runs", "--json").out)
    assert runs[0]["status"] == "failed" and runs[0]["error"].startswith("abandoned:")
    step = json.loads(terminal("pipeline", "describe", "latest", "--json").out)["steps"][0]
    assert step["status"] == "failed"


# --- problems, each one line within seconds -------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word: a server hung, or a firewall."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    "problem", ["wrong password", "unknown database", "no server", "silent server", "no permission"]
)
def test_a_mysql_store_that_cannot_be_used_is_one_line(
    problem: str,
    team_database: Database,
    terminal,
    project: Path,
    silent_server: int,
    request: pytest.FixtureRequest,
) -> None:
    _, flags, bucket = bucket_options("s3", request)
    database, password = team_database, DB_CANARY
    if problem == "wrong password":
        password = "not-the-password"
    elif problem == "unknown database":
        database = Database(database.url, database.host, database.port, database.username, "nope")
    elif problem in ("no server", "silent server"):
        port = closed_port() if problem == "no server" else silent_server
        database = Database(database.url, database.host, port, database.username, database.database)
    elif problem == "no permission":
        engine = create_engine("mysql+pymysql://root@127.0.0.1:3306/")
        with engine.begin() as connection:
            connection.execute(
                text(f"REVOKE ALL ON `{database.database}`.* FROM '{database.username}'@'%'")
            )
            connection.execute(
                text(f"GRANT SELECT ON `{database.database}`.* TO '{database.username}'@'%'")
            )
        engine.dispose()
    register_team_stack(terminal, database, flags, password=password)
    result = terminal("pipeline", "runs")
    advice = {
        "wrong password": "check --username and --password",
        "unknown database": "create that database on the server, or fix --database",
        "no server": "check that the server is running and reachable",
        "silent server": "check that the server is running and reachable",
        "no permission": "grant the user CREATE",
    }[problem]
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1 and advice in result.err, result.err
    assert result.err.startswith("stackmagic: error: cannot open the metadata store mysql://")
    assert DB_CANARY not in result.err and "Traceback" not in result.err
    if problem == "silent server":  # it gave up when its timeout ran out, not never
        assert "(timed out)" in result.err, result.err

    if problem == "no server":  # a run says the same before it makes or stores anything
        team_notebook(project)
        ran = terminal("pipeline", "run", "team.ipynb")
        assert ran.code == 2 and advice in ran.err, ran.err
        assert bucket.find(bucket.root) == [], "no bundle was stored"


@pytest.mark.parametrize("problem", ["unknown database", "no server"])
def test_a_postgresql_store_that_cannot_be_used_is_one_line(
    problem: str,
    postgresql_database: Database,
    terminal,
    project: Path,
    request: pytest.FixtureRequest,
) -> None:
    _, flags, _ = bucket_options("s3", request)
    database = postgresql_database
    if problem == "unknown database":
        database = Database(database.url, database.host, database.port, database.username, "nope")
    else:
        database = Database(
            database.url, database.host, closed_port(), database.username, database.database
        )
    register_team_stack(terminal, database, flags, password=None, flavor="postgresql")
    result = terminal("pipeline", "runs")
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert result.err.startswith("stackmagic: error: cannot open the metadata store postgresql://")


def test_a_pipeline_runs_on_postgresql(
    postgresql_database: Database, terminal, project: Path, request: pytest.FixtureRequest
) -> None:
    _, flags, _ = bucket_options("s3", request)
    register_team_stack(terminal, postgresql_database, flags, password=None, flavor="postgresql")
    result = terminal("pipeline", "run", str(team_notebook(project)), "--json")
    assert result.code == 0, result.err
    assert (
        json.loads(terminal("pipeline", "describe", "latest", "--json").out)["status"]
        == "completed"
    )


def test_a_missing_bucket_is_one_line_and_creates_nothing(
    team_database: Database, terminal, project: Path, request: pytest.FixtureRequest
) -> None:
    url, flags, store = bucket_options("s3", request)
    missing = url.replace("s3://", "s3://no-such-")
    flags = [f"--path={missing}", *flags[1:]]
    register_team_stack(terminal, team_database, flags)
    result = terminal("pipeline", "run", str(team_notebook(project)))
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert f"the bucket of the artifact store {missing} does not exist" in result.err
    assert json.loads(terminal("pipeline", "runs", "--json").out) == [], "no run was recorded"


@pytest.mark.parametrize(
    ("flavor", "flags", "module", "extra"),
    [
        (
            "metadata-store",
            ["--type=mysql", "--host=127.0.0.1", "--database=d"],
            "pymysql",
            "mysql",
        ),
        ("artifact-store", ["--type=s3", "--path=s3://b/d"], "s3fs", "s3"),
        ("artifact-store", ["--type=gcp", "--path=gs://b/d"], "gcsfs", "gcp"),
        ("artifact-store", ["--type=azure", "--path=az://b/d"], "adlfs", "azure"),
    ],
)
def test_a_missing_extra_says_what_to_install(
    flavor: str, flags: list[str], module: str, extra: str, terminal, project: Path
) -> None:
    assert terminal("init").code == 0
    assert terminal(flavor, "register", "x", *flags).code == 0
    kind = "-m" if flavor == "metadata-store" else "-a"
    members = {"-m": "default", "-a": "default", "-o": "default"} | {kind: "x"}
    assert (
        terminal("stack", "register", "s", *(w for pair in members.items() for w in pair)).code == 0
    )
    script = (
        f"import sys; sys.modules[{module!r}] = None\n"  # as if the extra were not installed
        "from stackmagic.cli import main\n"
        "sys.exit(main(['pipeline', 'runs', '--stack', 's']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=project, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert f'pip install "stackmagic[{extra}]"' in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_gcs_emulator_needs_no_environment_setup(
    terminal, project: Path, request: pytest.FixtureRequest
) -> None:
    """gcsfs reads a switch once, on import; without it, it probes the emulator for a minute."""
    _, flags, bucket = bucket_options("gcs", request)
    for words in (
        ["init"],
        ["artifact-store", "register", "bucket", *flags],
        ["stack", "register", "gcs", "-m", "default", "-a", "bucket", "-o", "default"],
    ):
        assert terminal(*words).code == 0
    notebook = write_notebook(project / "one.ipynb", "%%step only\nanswer = 42")
    environment = {k: v for k, v in os.environ.items() if k != "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"}
    finished = subprocess.run(
        [str(BIN / "stackmagic"), "pipeline", "run", str(notebook), "--stack", "gcs", "--json"],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=45,
    )
    assert finished.returncode == 0, finished.stderr
    assert bucket.find(bucket.root), "the run's files are in the emulator's bucket"
