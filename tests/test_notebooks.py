"""Every example notebook in notebooks/ runs top to bottom in a real kernel, on a fresh project.

Each runs as a user opens it in JupyterLab: in its own folder, with the path
Jupyter gives the kernel (``JPY_SESSION_NAME``), so ``%pipeline run`` finds it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from conftest import Result
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
#: The stacks of the runs each notebook makes; a new notebook says here what it should leave.
RUNS = {"quickstart": ["default"], "kubeflow": ["kfp-local"], "widgets_tour": []}


@pytest.mark.kernel
@pytest.mark.parametrize("original", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_example_notebook_runs_top_to_bottom(
    original: Path, project: Path, terminal: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    notebook = Path(shutil.copy(original, project / original.name))
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    executed = nbformat.read(notebook, as_version=4)
    NotebookClient(executed, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(project)}}).execute()
    errors = [output for cell in executed.cells for output in cell.get("outputs", [])
              if output.get("output_type") == "error"]
    assert errors == [], errors
    runs = json.loads(terminal("pipeline", "runs", "--json").out)
    assert [(run["status"], run["stack"]) for run in runs] == [
        ("completed", stack) for stack in RUNS[original.stem]], runs
    stacks = json.loads(terminal("stack", "list", "--json").out)
    assert [stack["name"] for stack in stacks] == ["default"], "the notebook tidied up after itself"


def test_the_quickstart_runs_its_pipeline_and_loads_an_output_back(
    project: Path, terminal: Callable[..., Result], monkeypatch: pytest.MonkeyPatch,
) -> None:
    [quickstart] = [path for path in NOTEBOOKS if path.stem == "quickstart"]
    notebook = Path(shutil.copy(quickstart, project / quickstart.name))
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    executed = nbformat.read(notebook, as_version=4)
    NotebookClient(executed, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(project)}}).execute()
    run = json.loads(terminal("pipeline", "describe", "latest", "--json").out)
    assert run["status"] == "completed", run
    evaluate = next(step for step in run["steps"] if step["name"] == "evaluate")
    assert evaluate["metrics"][0]["name"] == "rmse" and evaluate["metrics"][0]["value"] < 0.5
    shown = "".join(json.dumps(output) for output in executed.cells[-1]["outputs"])
    assert "slope" in shown and "intercept" in shown, "the model came back into the kernel"
