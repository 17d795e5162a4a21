"""Apache Airflow in a venv of its own (``.airflow-venv``), so stackmagic's dependencies never meet it.

The tests build it when it is missing; CI starts the build in the background
(``python3 tests/airflow_venv.py``) so it is ready by the time they run. A file
lock keeps two processes from building it at once, and a marker holding the
requirement rebuilds it when the pin changes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: The one pinned requirement.
REQUIREMENT = "apache-airflow==3.3.2"
ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".airflow-venv"
AIRFLOW = VENV / "bin" / "airflow"
_MARKER = VENV / "installed.txt"
_LOCK = ROOT / ".airflow-venv.lock"


def airflow_venv() -> Path:
    """The venv's ``airflow`` command, built first if missing or pinned otherwise."""
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process's build: wait for it, then reuse it
        if not (_MARKER.exists() and _MARKER.read_text() == REQUIREMENT and AIRFLOW.exists()):
            _build()
    return AIRFLOW


def airflow_environment(home: Path, dags: Path, **config: str) -> dict[str, str]:
    """The environment of an Airflow whose state is all in ``home``: SQLite, no examples.

    ``config``: more settings, ``section__key=value`` (``core__executor="LocalExecutor"``).
    """
    settings = {
        "core__dags_folder": str(dags),
        "core__load_examples": "False",
        "database__sql_alchemy_conn": f"sqlite:///{home / 'airflow.db'}",
        "logging__base_log_folder": str(home / "logs"),
        **config,
    }
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    environment["AIRFLOW_HOME"] = str(home)
    environment.update({f"AIRFLOW__{key.upper()}": value for key, value in settings.items()})
    return environment


def _build() -> None:
    shutil.rmtree(VENV, ignore_errors=True)
    python = shutil.which("python3") or sys.executable
    subprocess.run([python, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--progress-bar", "off"]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([*pip, "--upgrade", "pip"], check=True, env=env)
    subprocess.run([*pip, REQUIREMENT], check=True, env=env)
    _MARKER.write_text(REQUIREMENT)


if __name__ == "__main__":
    print(f"Airflow is ready: {airflow_venv()}")
