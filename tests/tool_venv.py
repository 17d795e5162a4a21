"""Tools the tests run as servers or commands (Airflow, MLflow), each in a venv of its own.

A tool's dependencies never meet stackmagic's: each lives in ``ROOT/.NAME-venv``, built
when missing. CI starts the builds in the background (``python3 tests/tool_venv.py NAME``, with
the system's Python: this module needs nothing but the standard library) so they
are ready by the time the tests run. A file
lock keeps two processes from building one venv at once, and a marker holding the
requirement rebuilds it when the pin changes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ToolVenv:
    """A venv at ``ROOT/.NAME-venv`` holding one pinned requirement, and its command."""

    name: str
    #: the one pinned requirement, ``package==version``
    requirement: str
    #: the command the tests run, in the venv's ``bin``
    command: str

    @property
    def venv(self) -> Path:
        return ROOT / f".{self.name}-venv"

    @property
    def executable(self) -> Path:
        return self.venv / "bin" / self.command

    @property
    def _marker(self) -> Path:
        return self.venv / "installed.txt"

    @property
    def _lock(self) -> Path:
        return ROOT / f".{self.name}-venv.lock"

    def ready(self) -> Path:
        """The venv's command, the venv built first if missing or pinned otherwise."""
        with self._lock.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process's build: wait for it, then reuse
            marker = self._marker
            built = marker.exists() and marker.read_text() == self.requirement
            if not (built and self.executable.exists()):
                self._build()
        return self.executable

    def _build(self) -> None:
        shutil.rmtree(self.venv, ignore_errors=True)
        python = shutil.which("python3") or sys.executable
        subprocess.run([python, "-m", "venv", str(self.venv)], check=True)
        pip = [str(self.venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        pip += ["--progress-bar", "off"]
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        subprocess.run([*pip, "--upgrade", "pip"], check=True, env=env)
        subprocess.run([*pip, self.requirement], check=True, env=env)
        self._marker.write_text(self.requirement)


#: Apache Airflow, for tests/test_airflow*.py (tests/airflow_venv.py)
AIRFLOW = ToolVenv("airflow", "apache-airflow==3.3.2", "airflow")
#: full MLflow, the tracking server of tests/test_tracker_mlflow.py (tests/mlflow_server.py), with
#: what its basic-auth app needs; the same version as the client in stackmagic's venv
MLFLOW = ToolVenv("mlflow", "mlflow[auth]==3.17.2", "mlflow")
TOOLS = {tool.name: tool for tool in (AIRFLOW, MLFLOW)}

if __name__ == "__main__":
    for name in sys.argv[1:] or TOOLS:
        print(f"{name} is ready: {TOOLS[name].ready()}")
