"""Shared fixtures: every test gets an empty project folder and its own per-user folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

from stackmagic.cli import main
from stackmagic.processes import running
from stackmagic.registry import Registry

BIN = Path(sys.executable).parent

#: the JupyterLab fixtures (``lab``, ``page``, ``browser``) of the browser tests
pytest_plugins = ["lab"]


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The per-user folder (secrets, fallback registry), outside the project."""
    home = tmp_path / "user-home"
    monkeypatch.setenv("STACKMAGIC_HOME", str(home))
    monkeypatch.delenv("STACKMAGIC_STACK", raising=False)
    return home


@pytest.fixture
def project(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder, the working directory of the test."""
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def initialised(project: Path) -> Path:
    """The project with its ``.stackmagic`` folder: the default local stack, active."""
    Registry.init(project)
    return project


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run ``stackmagic ARGS`` in this process, as the console script would."""

    def run(*args: str) -> Result:
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def terminal(project: Path) -> Callable[..., Result]:
    """Run the installed ``stackmagic`` console script in a separate process."""

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Result:
        completed = subprocess.run(
            [str(BIN / "stackmagic"), *args],
            cwd=cwd or project,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )
        return Result(completed.returncode, completed.stdout, completed.stderr)

    return run


@contextmanager
def started_run(notebook: Path, *options: str) -> Iterator[subprocess.Popen[str]]:
    """``stackmagic pipeline run NOTEBOOK [OPTIONS]`` in its own process, as a terminal starts
    it; its progress lines on ``stderr``. Killed if the test leaves it running."""
    command = ["pipeline", "run", str(notebook), *options, "--progress", "lines"]
    with subprocess.Popen(
        [str(BIN / "stackmagic"), *command],
        cwd=notebook.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()


def on_kernel(notebook: Path, name: str, display_name: str, language: str) -> Path:
    """The notebook, naming the kernel it runs on as Jupyter records one when it saves."""
    document = nbformat.read(notebook, as_version=4)
    document.metadata["kernelspec"] = {
        "name": name,
        "display_name": display_name,
        "language": language,
    }
    nbformat.write(document, notebook)
    return notebook


def ended(pid: int) -> bool:
    """Whether the process is gone (or a zombie, which runs no code)."""
    return not running(pid)


def wait_for(check: Callable[[], Any], timeout: float = 60, what: str = "it") -> Any:
    """What ``check`` answers once it answers something true, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (answer := check()):
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:.0f} s"
        time.sleep(0.3)
    return answer


def copy_of_repository(destination: Path) -> Path:
    """The repository's tracked files, as a fresh clone has them (no build output, no venv)."""
    root = Path(__file__).resolve().parents[1]
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, tracked):
        if (root / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, destination / name)
    return destination


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` with a hash of its bytes: equal snapshots, untouched folder."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


REFERENCE_SEQUENCE = [
    ["artifact-store", "register", "gcs", "--type=gcp", "--path=gs://team-bucket/pipelines"],
    [
        "metadata-store",
        "register",
        "sql",
        "--type=mysql",
        "--host=127.0.0.1",
        "--port=3306",
        "--username=zen",
        "--password=CANARY-pa55-word",
        "--database=zenml",
    ],
    [
        "orchestrator",
        "register",
        "kf",
        "--type=kubeflow",
        "--host=https://kfp.example.org/pipeline",
    ],
    ["stack", "register", "gcp", "-m", "sql", "-a", "gcs", "-o", "kf"],
    ["stack", "set", "gcp"],
]
CANARY = "CANARY-pa55-word"


# Real servers on 127.0.0.1 (S3, GCS and Azure emulators, MariaDB, PostgreSQL): tests/services.py.
from services import (  # noqa: E402, F401
    azurite_server,
    bucket,
    gcs_server,
    mysql_database,
    postgresql_database,
    s3_server,
    team_database,
)
from vm_sandbox import gce  # noqa: E402, F401
