"""The airflow orchestrator against a running Airflow 3: run, follow, cancel and schedule.

Real parts: Airflow's API server, scheduler (LocalExecutor) and DAG processor,
started once for the module on 127.0.0.1 with SQLite in a temporary home and
the simple auth manager's user; its tasks run the stackmagic runtime against
the machine's MariaDB and the S3 emulator, with the stores' secrets from the
scheduler's environment (the workers').
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from airflow_venv import airflow_environment, airflow_venv
from conftest import Result, wait_for
from readme import Command, blocks, commands
from services import DB_CANARY, S3_CANARY, Database, S3Server, free_port, port_open
from test_airflow import WORKER_SECRETS, airflow_stack
from test_readme import (  # noqa: F401 - team_servers is a fixture
    MYSQL_PASSWORD,
    TYPED,
    describe,
    team_servers,
    walk_of,
    write_readme_notebook,
)

from notebooks import write_notebook
from stackmagic.orchestrators.airflow_api import AirflowApi
from stackmagic.runtime.task_word import TaskWord

pytestmark = pytest.mark.kernel

PASSWORD_CANARY = "CANARY-airflow-" + secrets.token_hex(6)
STARTUP_SECONDS = 180


@dataclass(frozen=True)
class Airflow:
    url: str
    dags: Path
    home: Path
    environment: dict[str, str]

    def api(self) -> AirflowApi:
        return AirflowApi(self.url, username="admin", password=PASSWORD_CANARY)


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[Airflow]:
    """Airflow's API server, scheduler and DAG processor, standalone-style, for the module.

    Its users: admin, and the README's stackmagic. Its workers reach the S3 emulator as
    AWS (the README's team bucket) and have the team stack's secrets in their environment.
    """
    home = tmp_path_factory.mktemp("airflow-server")
    dags = home / "dags"
    dags.mkdir()
    users = {"admin": PASSWORD_CANARY, "stackmagic": TYPED["--password"]}
    (home / "passwords.json").write_text(json.dumps(users))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {
        **airflow_environment(
            home,
            dags,
            core__executor="LocalExecutor",
            core__simple_auth_manager_users="admin:admin,stackmagic:admin",
            core__simple_auth_manager_passwords_file=str(home / "passwords.json"),
            core__execution_api_server_url=f"{url}/execution/",
            api__host="127.0.0.1",
            api__port=str(port),
            api__workers="1",
            api_auth__jwt_secret=secrets.token_hex(16),
            # tokens expire within every followed run: the client must get new ones
            api_auth__jwt_expiration_time="3",
            api_auth__jwt_leeway="0",
            dag_processor__refresh_interval="1",
            dag_processor__min_file_process_interval="1",
        ),
        **WORKER_SECRETS,  # the tasks' environment: the stores' secrets
        "AWS_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    airflow = str(airflow_venv())
    subprocess.run([airflow, "db", "migrate"], env=environment, check=True, capture_output=True)
    processes = []
    try:
        for command in (["api-server"], ["scheduler"], ["dag-processor"]):
            log = (home / f"{command[0]}.log").open("wb")
            processes.append(
                subprocess.Popen(
                    [airflow, *command],
                    env=environment,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its workers too are stopped with it
                )
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while not (port_open(port) and _healthy(url)):
            exited = [p.args[1] for p in processes if p.poll() is not None]
            assert not exited, f"airflow {exited} exited; see {home}"
            assert time.monotonic() < deadline, f"Airflow did not start; see {home}"
            time.sleep(0.5)
        yield Airflow(url, dags, home, environment)
    finally:
        _stop(processes)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as answer:
            health = json.load(answer)
    except OSError:
        return False
    return all(
        health.get(part, {}).get("status") == "healthy" for part in ("scheduler", "dag_processor")
    )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Each process and its children (a session each): all asked at once, then made to."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def notebook(folder: Path, name: str, slow: str = "") -> Path:
    return write_notebook(
        folder / f"{name}.ipynb",
        "import time",
        f"%%step load\n{slow}rows = [i * scale for i in range(10)]",
        "%%step report\nsummary = {'total': sum(rows), 'scale': scale}",
        parameters="scale = 2.0",
    )


def test_the_readme_airflow_section(
    airflow: Airflow,
    project: Path,
    team_servers: dict[str, str],  # noqa: F811 - the fixture imported above
) -> None:
    """The section's commands on the README's team stack; the Variable set with the real CLI."""

    def airflow_cli(command: Command) -> None:
        """Runs `airflow ...` against the module's Airflow; "..." is the team database's password."""
        words = [w.replace('"..."', json.dumps(MYSQL_PASSWORD)) for w in command.words[1:]]
        subprocess.run([str(airflow_venv()), *words], env=airflow.environment, check=True)

    write_readme_notebook(project)
    walk = walk_of(
        project,
        substitutions={
            **team_servers,
            "--api-url=http://airflow.internal:8080": (
                f"--api-url={airflow.url}",
                "--poll-seconds=1",
                "--parse-timeout=90",
            ),
            "--dags-folder=/shared/airflow/dags": f"--dags-folder={airflow.dags}",
            "--python=/opt/ml/bin/python": f"--python={sys.executable}",
        },
        stand_ins={"airflow": airflow_cli},
    )
    walk.run(Command(("stackmagic", "init")))
    [team, *_] = blocks("Team stacks: a shared database and a bucket", "bash")
    walk.run_all(c for c in commands(team.text) if c.words[:2] != ("stackmagic", "pipeline"))
    [section] = blocks("Airflow", "bash")
    *before, unschedule = commands(section.text)
    walk.run_all(before)
    walk.assert_no_stale_substitution()

    assert "dag_id='train'" in (project / "train_dag.py").read_text(), "the export"
    run = describe(walk)
    assert (run["stack"], run["status"]) == ("af", "completed"), run
    assert all(step["status"] == "completed" for step in run["steps"])
    dag_id, _, airflow_run = run["orchestrator_run_id"].partition("/")
    api = airflow.api()
    assert (dag_id, api.run_state(dag_id, airflow_run)) == ("train", "success")
    listed = json.loads(walk.run(Command(("stackmagic", "pipeline", "runs", "--json"))))
    assert len(listed) == 1, "the DAG run's tasks recorded the run pipeline run recorded"
    scheduled = api.dag("train.scheduled")
    assert scheduled is not None and scheduled["is_paused"] is False
    assert scheduled["timetable_summary"] == "0 3 * * *"
    walk.run(unschedule)
    assert api.dag("train.scheduled") is None
    assert not (airflow.dags / "train.scheduled.py").exists()
    assert MYSQL_PASSWORD not in "".join(walk.said)
    assert MYSQL_PASSWORD not in "".join(p.read_text() for p in airflow.dags.iterdir())


def test_a_cancelled_run_and_a_scheduled_one_on_a_team_stack(
    airflow: Airflow,
    team_database: Database,
    terminal: Callable[..., Result],
    project: Path,
    request: pytest.FixtureRequest,
) -> None:
    options = ["--username=admin", f"--password={PASSWORD_CANARY}"]
    options += ["--poll-seconds=1", "--parse-timeout=90"]
    airflow_stack(
        terminal, team_database, request, *options, api_url=airflow.url, dags=airflow.dags
    )
    daily = notebook(project, "daily")
    api = airflow.api()

    # a DAG file this Airflow cannot load (no docker provider): said at once, not after 90 s
    update = ["orchestrator", "update", "kf"]
    assert terminal(*update, "--operator=docker", "--image=steps:1", "--store-secret=s").code == 0
    said = terminal("pipeline", "run", str(daily))
    assert "could not load the DAG file" in said.err, said.err
    assert "No module named 'airflow.providers.docker'" in said.err, said.err
    assert terminal(*update, "--operator=bash", "--store-secret=").code == 0

    # cancel: the DAG run is marked failed, which stops its task
    slow = notebook(project, "slow", slow="time.sleep(120)\n")
    said = terminal("pipeline", "run", str(slow), "--json")
    assert said.code == 0, said.err
    started = json.loads(said.out)["id"]

    def load_running() -> bool:
        described = json.loads(terminal("pipeline", "describe", started, "--json").out)
        return described["steps"][0]["status"] == "running"

    wait_for(load_running, timeout=90, what="the slow step started")
    said = terminal("pipeline", "cancel", started, "--json")
    assert said.code == 0, said.err
    cancelled = json.loads(terminal("pipeline", "describe", started, "--json").out)
    assert cancelled["status"] == "cancelled"
    slow_dag, _, slow_run = cancelled["orchestrator_run_id"].partition("/")
    assert api.run_state(slow_dag, slow_run) == "failed"

    # a schedule: its own DAG, with the cron as its schedule, unpaused; unscheduled, gone
    said = terminal("pipeline", "schedule", str(daily), "--cron", "0 3 * * *", "-p", "scale", "4")
    assert said.code == 0, said.err
    scheduled = api.dag("daily.scheduled")
    assert scheduled is not None
    assert scheduled["timetable_summary"] == "0 3 * * *" and scheduled["is_paused"] is False
    source = (airflow.dags / "daily.scheduled.py").read_text()
    assert "'scale': Param(4, type='number')" in source, "the schedule's parameters"
    assert task_word(source).options == {"schedule": "daily"}
    for place in airflow.dags.iterdir():
        text = place.read_text()
        assert not any(c in text for c in (DB_CANARY, S3_CANARY, PASSWORD_CANARY)), place

    # a run of the schedule's DAG (as its cron would start it) records the schedule's name
    triggered = api.trigger("daily.scheduled", {})
    finished = wait_for(
        lambda: (
            api.run_state("daily.scheduled", triggered) in ("success", "failed")
            and api.run_state("daily.scheduled", triggered)
        ),
        timeout=120,
        what="the scheduled DAG's run",
    )
    assert finished == "success"
    latest = json.loads(terminal("pipeline", "describe", "latest", "--json").out)
    assert latest["schedule"] == "daily" and latest["parameters"] == {"scale": 4}
    assert latest["status"] == "completed"

    said = terminal("pipeline", "unschedule", "daily")
    assert said.code == 0, said.err
    assert api.dag("daily.scheduled") is None
    assert not (airflow.dags / "daily.scheduled.py").exists()


def task_word(source: str) -> TaskWord:
    """The TASK description a DAG file holds."""
    (value,) = [
        node.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "TASK"
    ]
    return TaskWord.decode(ast.literal_eval(value))
