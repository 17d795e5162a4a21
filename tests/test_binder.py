"""The Binder files: repo2docker reads them as Binder would, and their install works here.

`jupyter-repo2docker --no-build` writes the Dockerfile Binder would build
(no Docker engine needed); the install steps of ``binder/postBuild`` then run
for real in a fresh virtual environment, from a copy of the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import BIN, copy_of_repository

ROOT = Path(__file__).resolve().parents[1]


def test_repo2docker_builds_the_environment_from_binder_and_runs_post_build() -> None:
    described = subprocess.run(
        [
            str(BIN / "jupyter-repo2docker"),
            "--no-build",
            "--debug",
            "--user-id",
            "1000",
            "--user-name",
            "jovyan",
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    dockerfile = described.stdout + described.stderr
    assert described.returncode == 0, dockerfile[-3000:]
    assert "Building conda environment for python=3.11" in dockerfile
    assert '--file "binder/environment.yml"' in dockerfile, "the environment comes from binder/"
    assert "RUN ./binder/postBuild" in dockerfile


def test_the_binder_install_steps_work_in_a_fresh_virtual_environment(tmp_path: Path) -> None:
    copy = copy_of_repository(tmp_path / "repository")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    environment = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "STACKMAGIC_HOME": str(tmp_path / "home"),
        "VIRTUAL_ENV": str(venv),
    }
    environment.pop("PYTHONPATH", None)
    # Binder's conda has a current pip; a venv's bundled one can take many minutes to resolve
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "-U", "pip"],
        check=True,
        env=environment,
        timeout=300,
    )
    built = subprocess.run(
        ["bash", "binder/postBuild"],
        cwd=copy,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, f"stdout: {_tail(built.stdout)}\nstderr: {_tail(built.stderr)}"
    assert (copy / ".stackmagic").is_dir(), "postBuild set up the project the notebooks use"
    listed = subprocess.run(
        [str(venv / "bin" / "jupyter"), "labextension", "list"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert str(venv) in listed.stdout + listed.stderr, "the extension is in the fresh environment"


def _tail(output: str) -> str:
    """The end of an install's output, without pip's notes on configured indexes that are absent."""
    kept = [line for line in output.splitlines() if not line.startswith("WARNING: Location")]
    return "\n".join(kept[-40:])
