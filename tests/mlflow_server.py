"""A real MLflow tracking server on 127.0.0.1, from full ``mlflow`` in a venv of its own.

The server (``.mlflow-venv``, tests/tool_venv.py) keeps runs in SQLite and serves
artifacts from a folder, both in the test's temporary folder; the tests read back
through mlflow's client in stackmagic's venv, pinned to the same version. With
``auth=True`` it runs mlflow's basic-auth app, which refuses wrong credentials.
Telemetry is off in the server and in every process the tests start.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from services import HOST, free_port, unavailable
from tool_venv import MLFLOW as MLFLOW_TOOL

#: no usage reports from mlflow, wherever it runs in the tests
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
STARTUP_SECONDS = 90.0
ADMIN = "admin"


@dataclass(frozen=True)
class MLflowServer:
    url: str
    folder: Path
    #: the admin's password, where the server runs the basic-auth app
    admin_password: str | None = None


def mlflow_command() -> Path:
    """The venv's ``mlflow``; built first if missing (failing where services are required)."""
    try:
        return MLFLOW_TOOL.ready()
    except (OSError, subprocess.CalledProcessError) as error:
        unavailable(f"the MLflow venv ({MLFLOW_TOOL.venv}) could not be built: {error}")


@contextmanager
def running_mlflow(folder: Path, *, auth: bool = False) -> Iterator[MLflowServer]:
    """``mlflow server`` on a free port, its state in ``folder``, stopped at the end."""
    mlflow = mlflow_command()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://{HOST}:{port}"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    environment.update(QUIET, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # no GenAI job workers
    options = []
    password = None
    if auth:
        password = "admin-" + secrets.token_hex(8)
        config = folder / "basic_auth.ini"
        config.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = sqlite:///{folder / 'users.db'}\nadmin_username = {ADMIN}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            "auth_cache_ttl_seconds = 600\n"  # one slow password check per user, not per request
        )
        environment.update(
            MLFLOW_AUTH_CONFIG_PATH=str(config),
            MLFLOW_AUTH_ADMIN_PASSWORD=password,
            MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),  # its forms' CSRF tokens
        )
        options = ["--app-name", "basic-auth"]
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [
            str(mlflow),
            "server",
            *("--host", HOST, "--port", str(port), "--workers", "1"),
            *("--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"),
            *("--artifacts-destination", str(folder / "artifacts")),
            *options,
        ],
        cwd=folder,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (folder / "server.log").read_text(errors="replace").splitlines()[-5:]
                pytest.fail(f"mlflow server did not start: {' | '.join(tail)}", pytrace=False)
            time.sleep(0.3)
        yield MLflowServer(url, folder, password)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the server and the workers it started
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLflowServer]:
    """One server for a test module: each test uses experiments of its own."""
    with running_mlflow(tmp_path_factory.mktemp("mlflow")) as server:
        yield server
