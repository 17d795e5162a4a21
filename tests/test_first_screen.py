"""The README's first screen, run verbatim on a fresh copy of the repository, as a newcomer's
first command: it installs stackmagic in a new virtual environment (building the lab
extension) and runs the quickstart notebook as a pipeline; then the "Development" section's
lab-extension workflow in that copy. A file of its own: the longest test, which the test
processes can then run beside the README's other walks (tests/test_readme.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import copy_of_repository
from readme import blocks, commands
from test_readme import not_run, runnable


@pytest.mark.kernel
def test_the_first_screen_installs_and_runs_the_quickstart_on_a_fresh_machine(
    tmp_path: Path,
) -> None:
    """The first command, verbatim, in a copy of the repository; then the lab-extension workflow."""
    [first_screen] = blocks("", "bash")
    main_job = next(
        line for line in first_screen.text.splitlines() if line.startswith("python3 -m venv")
    )
    assert [c for c in commands(first_screen.text) if not not_run(c)] == commands(main_job)
    copy = copy_of_repository(tmp_path / "clone")
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "PYTHONPATH", "STACKMAGIC_STACK")
    }
    environment["STACKMAGIC_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        ["bash", "-c", main_job],
        cwd=copy,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    venv_bin = copy / ".venv" / "bin"
    runs = json.loads(
        subprocess.run(
            [venv_bin / "stackmagic", "pipeline", "runs", "--json"],
            cwd=copy,
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert [(run["pipeline"], run["status"], run["stack"]) for run in runs] == [
        ("quickstart", "completed", "default")
    ]

    # Development: the editable install and the lab extension's edit-build loop, in that clone
    environment["PATH"] = f"{venv_bin}{os.pathsep}{environment['PATH']}"
    for command in runnable("Development"):
        built = subprocess.run(
            command.words, cwd=copy, env=environment, capture_output=True, text=True, timeout=600
        )
        assert built.returncode == 0, f"`{command}`: {built.stderr[-2000:]}"
    listed = subprocess.run(
        [venv_bin / "jupyter", "labextension", "list"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert re.search(r"stackmagic.*enabled.*OK", listed.stdout + listed.stderr), listed.stderr
    assert (copy / "stackmagic" / "labextension" / "package.json").is_file()
