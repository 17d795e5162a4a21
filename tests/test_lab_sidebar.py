"""The sidebar's runs in a real JupyterLab: told apart, filtered, compared, started
from the Run dialog and cancelled from their row; and the sidebar in the dark theme.

The fixtures (``lab``, ``page``, ``browser``) are in ``lab.py``. What the page
shows is checked against the terminal (``stackmagic pipeline ...``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import BIN, started_run, wait_for
from lab import OUTPUT, SIDEBAR, Lab, cli_json, open_lab, python_notebook

#: A pipeline with parameters and a metric that depends on them.
TRAIN = (
    "%%step train\nimport stackmagic\nloss = round(1 / (lr * epochs), 3)\n"
    "stackmagic.log_metric('loss', loss)"
)
REPORT = "%%step report --after train\nprint('loss', loss)"
PARAMETERS = "lr = 0.1\nepochs = 2"


def run_row(page: Any, run_id: str) -> Any:
    return page.locator(f'{SIDEBAR} .jp-stackmagic-run[data-run="{run_id}"]')


def _wait_until_saved(lab: Lab, *keys: str) -> None:
    """Wait until JupyterLab saved its workspace (it does so a moment after a change) with the keys."""
    workspaces = lab.root.parent / "jupyter" / "workspaces"

    def saved() -> bool:
        texts = [path.read_text() for path in workspaces.glob("*.jupyterlab-workspace")]
        return any(all(key in text for key in keys) for text in texts)

    wait_for(saved, what=f"the workspace to be saved with {', '.join(keys)}")


def _runs_in_parallel(project: Path, notebook: Path, values: list[str]) -> None:
    """`stackmagic pipeline run NOTEBOOK -p lr VALUE` for each value, all at once."""
    processes = [
        subprocess.Popen(
            [str(BIN / "stackmagic"), "pipeline", "run", str(notebook), "-p", "lr", value],
            cwd=project,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for value in values
    ]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err


def test_runs_show_their_parameters_and_metrics_and_three_compare_side_by_side(
    page: Any, lab: Lab, terminal: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    notebook = python_notebook(lab.root / "train.ipynb", TRAIN, REPORT, parameters=PARAMETERS)
    for override in ([], ["-p", "lr", "0.2"], ["-p", "lr", "0.4"]):
        assert terminal("pipeline", "run", str(notebook), *override).code == 0
    runs = cli_json(terminal, "pipeline", "runs")
    by_lr = {run["parameters"]["lr"]: run["id"] for run in runs}
    scheduled = _scheduled_run(lab.root)
    open_lab(page, lab)

    # each row tells its run apart: short id, changed parameter, metric
    row = run_row(page, by_lr[0.4])
    expect(row).to_contain_text(by_lr[0.4].split("-")[-1])
    expect(row.locator(".jp-stackmagic-parameter")).to_have_text("lr=0.4")
    expect(row.locator(".jp-stackmagic-metric")).to_have_text("loss=1.25")
    expect(run_row(page, by_lr[0.1]).locator(".jp-stackmagic-parameter")).to_have_count(0)
    # a run a schedule started names it; the others, asked for, name none
    expect(run_row(page, scheduled).locator(".jp-stackmagic-run-schedule")).to_have_text(
        "schedule nightly"
    )
    expect(run_row(page, by_lr[0.4]).locator(".jp-stackmagic-run-schedule")).to_have_count(0)

    for run_id in by_lr.values():
        run_row(page, run_id).locator(".jp-stackmagic-pick").check()
    compare = page.locator(f"{SIDEBAR} .jp-stackmagic-compare")
    expect(compare).to_contain_text("Compare (3)")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.locator(SIDEBAR).screenshot(path=str(OUTPUT / "sidebar-runs.png"))
    compare.click()

    view = page.locator(".jp-stackmagic-compare-view:visible")
    table = view.get_by_role("table", name="Runs compared")
    # the differing parameter, and the metrics, one column per run, the oldest first
    order = [by_lr[0.1], by_lr[0.2], by_lr[0.4]]
    expect(table.locator("thead th[data-run]")).to_have_count(3)
    assert [
        th.get_attribute("data-run") for th in table.locator("thead th[data-run]").all()
    ] == order
    expect(table.locator('tr[data-name="lr"] td')).to_have_text(["0.1", "0.2", "0.4"])
    expect(table.locator('tr[data-name="loss"] td')).to_have_text(["5", "2.5", "1.25"])
    expect(table.locator('tr[data-name="epochs"]')).to_have_count(0)
    expect(view).to_contain_text("Same in every run: epochs=2")
    bars = view.locator("svg[role=img] g[data-run]")
    assert [bar.get_attribute("data-value") for bar in bars.all()] == ["5", "2.5", "1.25"]
    widths = [float(bar.locator("rect").get_attribute("width") or 0) for bar in bars.all()]
    assert widths[0] > widths[1] > widths[2] > 0, "the bars are drawn to scale"

    page.screenshot(path=str(OUTPUT / "sidebar-compare.png"))
    view.locator(".jp-stackmagic-comparison").screenshot(
        path=str(OUTPUT / "sidebar-compare-view.png")
    )

    # a click on a run opens its own view
    run_row(page, by_lr[0.4]).locator(".jp-stackmagic-run-title").click()
    expect(page.locator(f"#stackmagic-run-{by_lr[0.4]}")).to_be_visible()

    # after a reload both tabs are back, as JupyterLab's own are, showing the same runs
    _wait_until_saved(lab, f"stackmagic-run:{by_lr[0.4]}", "stackmagic-compare:")
    page.reload()
    run_view = page.locator(f'.jp-stackmagic-runview-page[data-run="{by_lr[0.4]}"]')
    expect(run_view).to_be_visible(timeout=60_000)
    expect(run_view.locator("h1")).to_contain_text(by_lr[0.4])
    tabs = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab")
    tabs.filter(has_text="Compare").click()
    restored = page.locator(".jp-stackmagic-compare-view:visible")
    expect(restored.locator("thead th[data-run]")).to_have_count(3)
    expect(restored.locator('tr[data-name="lr"] td')).to_have_text(["0.1", "0.2", "0.4"])


def _scheduled_run(project: Path) -> str:
    """A run as a schedule's first task records it (on Kubeflow, say): with the schedule's name."""
    from stackmagic.open_stack import OpenStack
    from stackmagic.registry import Registry

    with OpenStack.open(Registry.open(project)) as opened:
        opened.metadata.create_run(
            run_id="kfp-3f2a9c",
            pipeline="train",
            notebook="train.ipynb",
            stack_name=opened.name,
            stack=opened.snapshot(),
            bundle_uri="unused",
            bundle_hash="h" * 64,
            options={},
            parameters={"lr": 0.1, "epochs": 2},
            overridden=[],
            steps=["train", "report"],
            driven_here=False,
            schedule="nightly",
        )
        opened.metadata.run_finished("kfp-3f2a9c")
    return "kfp-3f2a9c"


def test_filters_and_show_more(page: Any, lab: Lab, terminal: Callable[..., Any]) -> None:
    from playwright.sync_api import expect

    notebook = python_notebook(lab.root / "train.ipynb", TRAIN, parameters=PARAMETERS)
    _runs_in_parallel(lab.root, notebook, [str(0.1 + n / 100) for n in range(11)])
    other = python_notebook(lab.root / "other.ipynb", "%%step fails\nraise ValueError('no')")
    assert terminal("pipeline", "run", str(other)).code != 0
    open_lab(page, lab)

    rows = page.locator(f"{SIDEBAR} .jp-stackmagic-run")
    expect(rows).to_have_count(10)
    page.locator(f"{SIDEBAR} .jp-stackmagic-more").click()
    expect(rows).to_have_count(12)
    expect(page.locator(f"{SIDEBAR} .jp-stackmagic-more")).to_have_count(0)

    runs = page.locator(f'{SIDEBAR} [data-section="runs"]')
    runs.get_by_label("Status").select_option("failed")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-status", "failed")
    expect(rows.first).to_contain_text("other")
    # a failed run's error is on the page, not only in a tooltip
    expect(rows.first.locator(".jp-stackmagic-run-error")).to_contain_text("ValueError")

    runs.get_by_label("Status").select_option("")
    runs.get_by_label("Pipeline").select_option("other")
    expect(rows).to_have_count(1)
    runs.get_by_label("Pipeline").select_option("train")
    expect(rows).to_have_count(10)
    expect(page.locator(f"{SIDEBAR} .jp-stackmagic-more")).to_be_visible()


def test_run_dialog_starts_a_run_with_an_overridden_parameter_and_no_cache(
    page: Any, lab: Lab, terminal: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    python_notebook(lab.root / "train.ipynb", TRAIN, REPORT, parameters=PARAMETERS)
    open_lab(page, lab, "lab/tree/train.ipynb")

    page.get_by_role("button", name="Run as pipeline").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog.get_by_label("lr")).to_have_value("0.1")
    expect(dialog.get_by_label("epochs")).to_have_value("2")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert cli_json(terminal, "pipeline", "runs") == []

    page.get_by_role("button", name="Run as pipeline").click()
    dialog.get_by_label("lr").fill("0.25")
    dialog.get_by_label("No cache").check()
    dialog.get_by_role("button", name="Run").click()
    finished = page.locator(f'{SIDEBAR} .jp-stackmagic-run[data-status="completed"]')
    expect(finished).to_have_count(1, timeout=120_000)
    expect(finished.locator(".jp-stackmagic-parameter")).to_have_text("lr=0.25")
    expect(finished.locator(".jp-stackmagic-metric")).to_have_text("loss=2")

    described = cli_json(terminal, "pipeline", "describe", str(finished.get_attribute("data-run")))
    assert described["parameters"] == {"lr": 0.25, "epochs": 2}
    assert described["overridden"] == ["lr"]
    assert described["options"]["no_cache"] is True


def test_a_running_run_is_cancelled_from_its_row(
    page: Any, lab: Lab, terminal: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    notebook = python_notebook(lab.root / "slow.ipynb", "%%step wait\nimport time\ntime.sleep(120)")
    open_lab(page, lab)
    with started_run(notebook):
        running = page.locator(f'{SIDEBAR} .jp-stackmagic-run[data-status="running"]')
        expect(running).to_have_count(1, timeout=60_000)
        run_id = str(running.get_attribute("data-run"))
        running.locator(".jp-stackmagic-cancel").click()
        page.locator(".jp-Dialog").get_by_role("button", name="Cancel run").click()
        cancelled = run_row(page, run_id)
        expect(cancelled).to_have_attribute("data-status", "cancelled", timeout=60_000)
        expect(cancelled.locator(".jp-stackmagic-cancel")).to_have_count(0)
    described = cli_json(terminal, "pipeline", "describe", run_id)
    assert described["status"] == "cancelled"
    assert [step["status"] for step in described["steps"]] == ["cancelled"]


def test_the_sidebar_in_the_dark_theme(
    page: Any, lab: Lab, tmp_path: Path, terminal: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    themes = tmp_path / "jupyter" / "settings" / "@jupyterlab" / "apputils-extension"
    (themes / "themes.jupyterlab-settings").write_text('{"theme": "JupyterLab Dark"}')
    notebook = python_notebook(lab.root / "train.ipynb", TRAIN, REPORT, parameters=PARAMETERS)
    assert terminal("pipeline", "run", str(notebook)).code == 0
    assert terminal("pipeline", "run", str(notebook), "-p", "lr", "0.3").code == 0
    open_lab(page, lab)
    page.locator(f"{SIDEBAR} .jp-stackmagic-expand").first.click()
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.locator(SIDEBAR).screenshot(path=str(OUTPUT / "sidebar-dark.png"))


def test_a_run_that_cannot_start_says_why_whole_in_a_dialog(
    page: Any, lab: Lab, terminal: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    python_notebook(lab.root / "broken.ipynb", "%%step train --after nowhere\nx = 1")
    expected = (
        terminal("pipeline", "run", "broken.ipynb").err.strip().removeprefix("stackmagic: error: ")
    )
    assert len(expected) > 60, expected  # longer than a notification shows
    open_lab(page, lab, "lab/tree/broken.ipynb")
    page.get_by_role("button", name="Run as pipeline").click()
    refusal = page.locator(".jp-Dialog", has_text="broken.ipynb did not run as a pipeline")
    expect(refusal).to_contain_text(expected)
    refusal.get_by_role("button").last.click()
    expect(refusal).to_have_count(0)
    assert cli_json(terminal, "pipeline", "runs") == []


def test_a_broken_registry_is_said_once_and_wraps_inside_the_panel(
    page: Any, lab: Lab, terminal: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    assert terminal("init").code == 0
    (lab.root / ".stackmagic" / "config.json").write_text('{"stacks": ')
    said = terminal("stack", "list").err.strip().removeprefix("stackmagic: error: ")
    runs_answered: list[Any] = []
    page.on("response", lambda r: "/stackmagic/api/runs" in r.url and runs_answered.append(r))
    page.goto(lab.page_url())
    page.locator('.jp-SideBar [data-id="stackmagic-sidebar"]').click()
    alerts = page.locator(SIDEBAR).get_by_role("alert")
    expect(alerts.first).to_contain_text(said)
    # once the runs were asked twice, the first answer (a failure alike) has been shown
    while len(runs_answered) < 2:
        page.wait_for_event("response")
    expect(alerts).to_have_count(1)  # said once: not again under Runs
    expect(page.locator(f'{SIDEBAR} [data-section="runs"]')).not_to_contain_text("No runs yet")
    # the long message (a path, then advice) wraps: nothing runs past the panel's edge
    assert alerts.first.evaluate("node => node.scrollWidth <= node.clientWidth")
    panel = page.locator(SIDEBAR).bounding_box()
    alert = alerts.first.bounding_box()
    assert panel and alert and alert["x"] + alert["width"] <= panel["x"] + panel["width"]
