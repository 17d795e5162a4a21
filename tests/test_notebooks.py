"""Every example notebook in notebooks/ runs top to bottom in a real kernel, on a fresh project.

Each runs as a user opens it in JupyterLab: in its own folder, beside the other
examples (the tours run ``team_pipeline.ipynb``), with the path Jupyter gives the
kernel (``JPY_SESSION_NAME``), so ``%pipeline run`` finds it. The team-stack tour
runs once more under papermill, its parameters pointing at MariaDB and an S3 bucket.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import nbformat
import papermill
import pytest
from conftest import Result
from nbclient import NotebookClient
from services import DB_CANARY, S3_CANARY, S3_KEY, Database, S3Server
from sqlalchemy import create_engine, text
from team import bucket_options

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
#: The stacks of the runs each notebook makes; a new notebook says here what it should leave.
#: The team tour's runs go to its own database and bucket; cloud_vm only makes a dry run.
RUNS = {
    "quickstart": ["default"],
    "kubeflow": ["kfp-local"],
    "widgets_tour": [],
    "team_pipeline": [],
    "team_stack_tour": [],
    "cloud_vm": [],
}
#: What a notebook shows that a reader should see (beyond running without an error).
SHOWN = {
    "cloud_vm": "Dry run: aws-vm would start this VM",
    "team_stack_tour": "test_rmse",
    "quickstart": "rmse",
}


def copy_examples(project: Path) -> None:
    """Every example notebook into the project, side by side as in notebooks/."""
    for example in NOTEBOOKS:
        shutil.copy(example, project / example.name)


@pytest.mark.kernel
@pytest.mark.parametrize("original", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_example_notebook_runs_top_to_bottom(
    original: Path,
    project: Path,
    terminal: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    copy_examples(project)
    notebook = project / original.name
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    monkeypatch.setenv("MYSQL_PASSWORD", DB_CANARY)  # what the cloud-VM notebook's env: names
    executed = nbformat.read(notebook, as_version=4)
    NotebookClient(
        executed, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(project)}}
    ).execute()
    outputs = [output for cell in executed.cells for output in cell.get("outputs", [])]
    errors = [output for output in outputs if output.get("output_type") == "error"]
    assert errors == [], errors
    assert SHOWN.get(original.stem, "") in json.dumps(outputs)
    assert DB_CANARY not in json.dumps(outputs), "a secret in the notebook's outputs"
    left = {path.name for path in project.iterdir()} - {example.name for example in NOTEBOOKS}
    assert left == set(), "the notebook left files behind"
    runs = json.loads(terminal("pipeline", "runs", "--json").out)
    assert [(run["status"], run["stack"]) for run in runs] == [
        ("completed", stack) for stack in RUNS[original.stem]
    ], runs
    stacks = json.loads(terminal("stack", "list", "--json").out)
    assert [stack["name"] for stack in stacks] == ["default"], "the notebook tidied up after itself"


def test_the_quickstart_runs_its_pipeline_and_loads_an_output_back(
    project: Path,
    terminal: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [quickstart] = [path for path in NOTEBOOKS if path.stem == "quickstart"]
    notebook = Path(shutil.copy(quickstart, project / quickstart.name))
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    executed = nbformat.read(notebook, as_version=4)
    NotebookClient(
        executed, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(project)}}
    ).execute()
    run = json.loads(terminal("pipeline", "describe", "latest", "--json").out)
    assert run["status"] == "completed", run
    evaluate = next(step for step in run["steps"] if step["name"] == "evaluate")
    assert evaluate["metrics"][0]["name"] == "rmse" and evaluate["metrics"][0]["value"] < 0.5
    shown = "".join(json.dumps(output) for output in executed.cells[-1]["outputs"])
    assert "slope" in shown and "intercept" in shown, "the model came back into the kernel"


@pytest.mark.kernel
def test_the_team_stack_tour_keeps_its_runs_in_mariadb_and_a_bucket_and_shows_no_secret(
    team_database: Database,
    project: Path,
    terminal: Callable[..., Result],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Papermill sets where the runs go; the credentials reach it as env: references only."""
    url, _, bucket = bucket_options("s3", request)
    s3: S3Server = request.getfixturevalue("s3_server")
    monkeypatch.setenv("TOUR_DB_PASSWORD", DB_CANARY)
    monkeypatch.setenv("TOUR_S3_SECRET", S3_CANARY)
    learning_rates = [0.1, 0.7]
    copy_examples(project)
    papermill.execute_notebook(
        str(project / "team_stack_tour.ipynb"),
        str(project / "executed.ipynb"),
        parameters={
            "mysql_host": team_database.host,
            "mysql_port": team_database.port,
            "mysql_user": team_database.username,
            "mysql_password": "env:TOUR_DB_PASSWORD",
            "mysql_database": team_database.database,
            "bucket": url,
            "s3_endpoint_url": s3.endpoint_url,
            "s3_access_key_id": S3_KEY,
            "s3_secret_access_key": "env:TOUR_S3_SECRET",
            "learning_rates": learning_rates,
        },
        kernel_name="python3",
        cwd=str(project),
        progress_bar=False,
    )

    engine = create_engine(team_database.url.replace(f"{team_database.username}@", "root@"))
    with engine.connect() as connection:
        statuses = dict(connection.execute(text("SELECT id, status FROM runs")).all())
        rates = dict(
            connection.execute(
                text("SELECT run_id, value FROM run_parameters WHERE name = 'learning_rate'")
            ).all()
        )
        rmses = dict(
            connection.execute(
                text(
                    "SELECT step_runs.run_id, metrics.value FROM metrics JOIN step_runs "
                    "ON metrics.step_run_id = step_runs.id WHERE metrics.name = 'test_rmse'"
                )
            ).all()
        )
    engine.dispose()
    assert sorted(statuses.values()) == ["completed"] * len(learning_rates), statuses
    assert sorted(float(rate) for rate in rates.values()) == learning_rates
    for run_id in statuses:
        assert bucket.find(f"{url}/team_pipeline/{run_id}"), f"run {run_id} left no artifacts"
    assert bucket.find(f"{url}/_bundles"), "the bundle is kept in the bucket"

    executed = nbformat.read(project / "executed.ipynb", as_version=4)
    outputs = [output for cell in executed.cells for output in cell.get("outputs", [])]
    [table] = [  # the tour's own DataFrame of the runs (`%pipeline runs` names the rate too)
        output["data"]["text/plain"]
        for output in outputs
        if "learning_rate" in (html := output.get("data", {}).get("text/html", ""))
        and 'class="dataframe' in html
    ]
    header, _, *lines = table.splitlines()
    rows = {
        line.split()[0]: dict(zip(header.split(), map(float, line.split()[1:]))) for line in lines
    }
    assert set(rows) == set(statuses), "one row per run"
    for run_id, row in rows.items():
        assert row["learning_rate"] == float(rates[run_id])
        assert row["test_rmse"] == pytest.approx(rmses[run_id], rel=1e-4)
    assert any("image/png" in output.get("data", {}) for output in outputs), "the plot is shown"

    written = (project / "executed.ipynb").read_text()
    assert DB_CANARY not in written and S3_CANARY not in written, "a secret in the notebook"
    stacks = json.loads(terminal("stack", "list", "--json").out)
    assert [stack["name"] for stack in stacks] == ["default"], "the tour tidied up after itself"
