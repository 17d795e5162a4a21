"""Without the ``kubeflow`` extra: the local stack, the CLI, the magics and the lab work, and
anything Kubeflow says in one line what to install.

kfp is installed where the tests run, so every process started here (the CLI, IPython,
JupyterLab) is made to miss it: a ``sitecustomize`` on ``PYTHONPATH`` puts a finder first
on ``sys.meta_path`` that refuses ``kfp`` and its API client, as if they were not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import snapshot
from lab import Lab

from notebooks import write_notebook

WITHOUT_KFP = '''\
import sys


class _NotInstalled:
    """Refuses the kubeflow extra's modules, as an install without the extra would."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("kfp", "kfp_server_api"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
'''
INSTALL_LINE = 'install it with `pip install "stackmagic[kubeflow]"`'


@pytest.fixture(autouse=True)
def without_kfp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every process this module's tests start misses kfp (autouse: before any server starts)."""
    folder = tmp_path / "without-kfp"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(WITHOUT_KFP)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    missing = subprocess.run(
        [sys.executable, "-c", "import kfp"], capture_output=True, text=True, timeout=60
    )
    assert "No module named 'kfp'" in missing.stderr, "the processes of these tests miss kfp"


def two_steps(project: Path) -> Path:
    return write_notebook(
        project / "numbers.ipynb",
        "%%step make\nvalues = [1, 2, 3]",
        "%%step total\nresult = sum(values)",
    )


def ipython(*lines: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "IPython",
            "--quick",
            "--no-banner",
            "--colors=NoColor",
            "-c",
            "\n".join(lines),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_local_stack_the_cli_and_the_magics_work_without_kfp(terminal, project: Path) -> None:
    assert terminal("init").code == 0
    notebook = two_steps(project)
    shown = terminal("pipeline", "show", str(notebook))
    assert shown.code == 0 and "make -> total  [values]" in shown.out, shown.err
    ran = terminal("pipeline", "run", str(notebook), "--json")
    assert ran.code == 0, ran.err
    assert [step["status"] for step in json.loads(ran.out)["steps"]] == ["completed", "completed"]
    assert "result  6  (builtins.int" in terminal("pipeline", "load", "latest", "total.result").out

    magics = ipython(
        "%load_ext stackmagic", f"%pipeline show {notebook.name}", "%pipeline runs", cwd=project
    )
    assert "make -> total  [values]" in magics.stdout and "completed" in magics.stdout, magics
    assert "Error" not in magics.stdout + magics.stderr, magics


def test_the_lab_and_its_sidebars_api_work_without_kfp(lab: Lab, terminal) -> None:
    assert terminal("init").code == 0
    two_steps(lab.root)
    assert terminal("pipeline", "run", "numbers.ipynb").code == 0

    def get(path: str) -> bytes:
        with urllib.request.urlopen(f"{lab.url}/{path}?token={lab.token}", timeout=30) as response:
            return response.read()

    assert [s["name"] for s in json.loads(get("stackmagic/api/stacks")) if s["active"]] == [
        "default"
    ]
    [run] = json.loads(get("stackmagic/api/runs"))
    assert run["pipeline"] == "numbers" and run["status"] == "completed"
    assert b'"name": "stackmagic"' in get("lab"), "the lab page loads the sidebar's extension"


@pytest.fixture
def kubeflow_stack(terminal, project: Path) -> Path:
    """A stack whose orchestrator is kubeflow: registering it needs no kfp, as with any extra."""
    for words in (
        ["init"],
        ["orchestrator", "register", "kfl", "--type=kubeflow", "--mode=local"],
        ["stack", "register", "kfl", "-m", "default", "-a", "default", "-o", "kfl"],
    ):
        registered = terminal(*words)
        assert registered.code == 0, registered.err
    return two_steps(project)


@pytest.mark.parametrize(
    "command",
    [
        ["pipeline", "run", "numbers.ipynb", "--stack", "kfl"],
        [
            "pipeline",
            "export",
            "numbers.ipynb",
            "--to",
            "kubeflow",
            "-o",
            "pipeline.yaml",
            "--stack",
            "kfl",
        ],
    ],
)
def test_kubeflow_without_the_extra_is_one_line_naming_it(
    command: list[str], terminal, project: Path, kubeflow_stack: Path
) -> None:
    artifacts = snapshot(project / ".stackmagic" / "artifacts")
    refused = terminal(*command)
    assert refused.code == 2 and refused.err.count("\n") == 1, refused.err
    assert refused.err.startswith(
        "stackmagic: error: the kubeflow orchestrator needs the Python package 'kfp', which is "
        "not installed; " + INSTALL_LINE
    ), refused.err
    assert snapshot(project / ".stackmagic" / "artifacts") == artifacts, "no bundle was stored"
    assert not (project / "pipeline.yaml").exists()
    listed = terminal("pipeline", "runs", "--stack", "kfl", "--json")
    assert listed.code == 0 and json.loads(listed.out) == [], "no run was recorded"


def test_a_kubeflow_run_in_a_notebook_is_a_usage_error_naming_the_extra(
    project: Path, kubeflow_stack: Path
) -> None:
    magics = ipython("%load_ext stackmagic", "%pipeline run numbers.ipynb --stack kfl", cwd=project)
    [error] = [
        line for line in magics.stdout.splitlines() + magics.stderr.splitlines() if "Error" in line
    ]
    assert error.startswith("UsageError: ") and INSTALL_LINE in error, magics


def test_a_kubeflow_stacks_step_image_installs_the_extra(terminal, kubeflow_stack: Path) -> None:
    """The steps start in kfp's executor, inside the image: kfp must be there."""
    written = terminal("image", "dockerfile", "numbers.ipynb", "--stack", "kfl", "-o", "-")
    assert written.code == 0, written.err
    assert '"stackmagic[kubeflow]==' in written.out
