"""Runs in their experiment tracker, seen from a real JupyterLab: each run's row links to its
twin in a real MLflow server (tests/mlflow_server.py), a run the tracker missed says so, and
the comparison of runs links each run's column to it too."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from lab import SIDEBAR, Lab, cli_json, open_lab, open_run, python_notebook
from mlflow_server import QUIET, MLflowServer, mlflow_server  # noqa: F401 - a fixture
from services import free_port
from test_lab_sidebar import PARAMETERS, REPORT, TRAIN, run_row
from test_tracker_mlflow import tracked_stack


@pytest.mark.kernel
def test_a_runs_row_links_to_it_in_the_tracker_or_says_it_is_not_there(
    page: Any,
    lab: Lab,
    terminal: Callable[..., Any],
    mlflow_server: MLflowServer,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from playwright.sync_api import expect

    for variable, value in QUIET.items():
        monkeypatch.setenv(variable, value)
    notebook = python_notebook(lab.root / "train.ipynb", TRAIN, REPORT, parameters=PARAMETERS)
    tracked_stack(terminal, mlflow_server.url)
    for words in (
        ["pipeline", "run", str(notebook)],
        ["experiment-tracker", "update", "mlf", f"--tracking-uri=http://127.0.0.1:{free_port()}"],
        ["pipeline", "run", str(notebook), "-p", "lr", "0.2"],
    ):
        result = terminal(*words)
        assert result.code == 0, result.err
    missed, mirrored = cli_json(terminal, "pipeline", "runs")
    assert mirrored["tracker"]["url"].startswith(mlflow_server.url + "/#/experiments/")
    assert missed["tracker"]["url"] is None and "not mirrored" in missed["tracker"]["note"]
    with urllib.request.urlopen(mirrored["tracker"]["url"], timeout=10) as answer:
        assert answer.status == 200, "the link opens MLflow's page of the run"

    open_lab(page, lab)
    link = run_row(page, mirrored["id"]).locator("a.jp-stackmagic-run-tracker")
    expect(link).to_have_attribute("href", mirrored["tracker"]["url"])
    expect(link).to_have_attribute("target", "_blank")
    expect(run_row(page, mirrored["id"]).locator(".jp-stackmagic-run-tracker-note")).to_have_count(
        0
    )
    note = run_row(page, missed["id"]).locator(".jp-stackmagic-run-tracker-note")
    expect(note).to_have_text("not mirrored")
    expect(note).to_have_attribute("title", missed["tracker"]["note"])
    expect(run_row(page, missed["id"]).locator("a.jp-stackmagic-run-tracker")).to_have_count(0)

    view = open_run(page, mirrored["id"])
    facts = view.locator(".jp-stackmagic-runview-facts")
    expect(facts.locator("a.jp-stackmagic-run-tracker")).to_have_text(mirrored["tracker"]["url"])
    view = open_run(page, missed["id"])
    facts = view.locator(".jp-stackmagic-runview-facts")
    expect(facts.locator(".jp-stackmagic-run-tracker-note")).to_have_text(missed["tracker"]["note"])

    for run in (mirrored, missed):
        run_row(page, run["id"]).locator(".jp-stackmagic-pick").check()
    page.locator(f"{SIDEBAR} .jp-stackmagic-compare").click()
    table = page.locator(".jp-stackmagic-compare-view:visible").get_by_role(
        "table", name="Runs compared"
    )
    column = table.locator(f'thead th[data-run="{mirrored["id"]}"] a.jp-stackmagic-run-tracker')
    expect(column).to_have_attribute("href", mirrored["tracker"]["url"])
    expect(table.locator(f'thead th[data-run="{missed["id"]}"] a')).to_have_count(0)
