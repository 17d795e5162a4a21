"""Apache Airflow in a venv of its own (``.airflow-venv``), so stackmagic's dependencies never meet it.

The tests build it when it is missing (tests/tool_venv.py); CI starts the build in the
background (``python3 tests/airflow_venv.py``) so it is ready by the time they run.
"""

from __future__ import annotations

import os
from pathlib import Path

from tool_venv import AIRFLOW as AIRFLOW_TOOL

#: The one pinned requirement.
REQUIREMENT = AIRFLOW_TOOL.requirement
VENV = AIRFLOW_TOOL.venv
AIRFLOW = AIRFLOW_TOOL.executable


def airflow_venv() -> Path:
    """The venv's ``airflow`` command, built first if missing or pinned otherwise."""
    return AIRFLOW_TOOL.ready()


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


if __name__ == "__main__":
    print(f"Airflow is ready: {airflow_venv()}")
