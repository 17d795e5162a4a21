"""The run view in a real JupyterLab: a run's DAG live, previews, executed notebooks, cancelling.

Runs are started through the REST API, as the Run dialog does, and opened from
the sidebar's run row, as a user does; the terminal then says what was recorded.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import psutil
from conftest import wait_for
from lab import OUTPUT, Lab, cli_json, open_lab, open_run, python_notebook

from stackmagic.open_stack import OpenStack
from stackmagic.registry import Registry

SETUP = (
    'import matplotlib\nmatplotlib.use("Agg")\nimport matplotlib.pyplot as plt\nimport pandas as pd'
)
LOAD = """\
%%step load
rain = pd.DataFrame({"city": ["Oslo", "Lima", "Pune"], "mm": [1.5, 0.2, 3.1]})
figure, axes = plt.subplots(figsize=(3, 2), dpi=100)
axes.bar(rain.city, rain.mm)
figure.savefig("rain.png")"""
WAIT = '%%step wait\nimport time\ntime.sleep(5)\nwettest = rain.sort_values("mm").city.iloc[-1]'
REPORT = "%%step report\nprint('wettest:', wettest)"
JOB_PAGE = "https://console.example.com/jobs/sm-check-try1"


def _api(lab: Lab, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"{lab.url}/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {lab.token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def _start(
    lab: Lab, notebook: str, parameters: dict[str, Any] | None = None, no_cache: bool = False
) -> str:
    body = {"notebook": notebook, "parameters": parameters or {}, "no_cache": no_cache}
    return str(_api(lab, "POST", "stackmagic/api/runs", body)["id"])


def _node(view: Any, step: str) -> Any:
    return view.locator(f'.jp-stackmagic-node[data-step="{step}"]')


def test_the_run_view_follows_a_run_live_and_previews_its_outputs(page: Any, lab: Lab) -> None:
    from playwright.sync_api import expect

    python_notebook(lab.root / "rain.ipynb", SETUP, LOAD, WAIT, REPORT)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    open_lab(page, lab)
    run_id = _start(lab, "rain.ipynb")
    view = open_run(page, run_id)
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
    expect(tab).to_have_text(f"rain · {run_id.split('-')[-1]}")

    # while `wait` sleeps: load done, wait running, report not started; the colours say so
    expect(_node(view, "wait")).to_have_attribute("data-status", "running", timeout=60_000)
    expect(_node(view, "load")).to_have_attribute("data-status", "completed")
    expect(_node(view, "report")).to_have_attribute("data-status", "pending")
    running_colour = _stroke(_node(view, "wait"))
    assert running_colour != _stroke(_node(view, "load")) != _stroke(_node(view, "report"))
    expect(view.locator(".jp-stackmagic-dag-edge")).to_have_count(2)  # load→wait→report
    expect(view.get_by_role("button", name="Cancel run")).to_be_visible()
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / "runview-running.png"))

    # the same view turns as the steps end, without a reload
    expect(view).to_have_attribute("data-status", "completed", timeout=60_000)
    for step in ("load", "wait", "report"):
        expect(_node(view, step)).to_have_attribute("data-status", "completed")
    assert _stroke(_node(view, "wait")) != running_colour
    expect(view.get_by_role("button", name="Cancel run")).to_have_count(0)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.wait_for_timeout(2500)  # over two polls' time: a run that ended is not asked again
    assert not [url for url in asked if _asks_for(run_id, url)], asked

    _node(view, "load").click()
    step = view.locator('.jp-stackmagic-runview-step[data-step="load"]')
    table = step.locator('[data-output="rain"] .jp-stackmagic-preview-table table')
    expect(table.locator("thead")).to_have_text("citymm")
    expect(table.locator("tbody tr")).to_have_count(3)
    expect(table.locator("tbody tr").first).to_have_text("Oslo1.5")
    image = step.locator('[data-output="file:rain.png"] img.jp-stackmagic-preview-image')
    expect(image).to_be_visible()
    assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [300, 200]
    page.screenshot(path=str(OUTPUT / "runview-finished.png"))

    # its executed notebook opens as a record: no kernel, nothing unsaved, told apart by run
    kernels_before = _api(lab, "GET", "api/kernels")
    sessions_before = _api(lab, "GET", "api/sessions")
    step.get_by_role("button", name="Open the executed notebook").click()
    expect(tab).to_have_text(f"{run_id.split('-')[-1]} · load.ipynb")
    executed = page.locator(".jp-NotebookPanel:visible")
    expect(executed.locator(".jp-Cell", has_text='figure.savefig("rain.png")')).to_be_visible()
    expect(executed.locator(".jp-Notebook")).to_be_visible()
    page.wait_for_timeout(2000)  # a kernel would have been asked for by now
    assert _api(lab, "GET", "api/kernels") == kernels_before == []
    assert _api(lab, "GET", "api/sessions") == sessions_before == []
    assert "jp-mod-dirty" not in (tab.get_attribute("class") or ""), "no unsaved marker"
    # dates it cannot read would log "Invalid time value"; a save or rename, the drive's refusal
    assert not [p for p in problems if "Invalid time value" in p or "as the run left" in p]
    expect(executed.locator(".jp-Toolbar-kernelStatus, .jp-KernelName")).not_to_contain_text(
        "Python"
    )
    page.screenshot(path=str(OUTPUT / "runview-executed-notebook.png"))


def test_cancel_run_in_the_run_view_stops_its_kernels(
    page: Any, lab: Lab, terminal: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    python_notebook(
        lab.root / "long.ipynb",
        "%%step prepare\nsize = 3",
        "%%step train\nimport os, time\nwith open('train.pid', 'w') as out:\n"
        "    out.write(str(os.getpid()))\ntime.sleep(600)\nmodel = size * 2",
        "%%step evaluate\nscore = model / 10",
    )
    open_lab(page, lab)
    run_id = _start(lab, "long.ipynb")
    view = open_run(page, run_id)
    expect(_node(view, "train")).to_have_attribute("data-status", "running", timeout=60_000)
    pid_file = lab.root / "train.pid"
    kernel = psutil.Process(
        int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the step to start"))
    )
    assert kernel in _kernels(lab.root), "the step runs in a kernel the server started"

    # a hidden view asks nothing; shown again, it goes on following the run
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    tabs = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab")
    tabs.filter(has_text="Launcher").click()
    page.wait_for_timeout(2500)  # over two polls' time
    assert not [url for url in asked if _asks_for(run_id, url)], asked
    with page.expect_request(lambda request: _asks_for(run_id, request.url)):
        tabs.filter(has_text="long").click()
    expect(view).to_be_visible()

    view.get_by_role("button", name="Cancel run").click()
    confirm = page.locator(".jp-Dialog")
    expect(confirm).to_contain_text("Its running steps are stopped")
    confirm.get_by_role("button", name="Cancel run").click()
    expect(view).to_have_attribute("data-status", "cancelled", timeout=60_000)
    expect(_node(view, "train")).to_have_attribute("data-status", "cancelled")
    expect(_node(view, "evaluate")).to_have_attribute("data-status", "skipped")
    expect(_node(view, "prepare")).to_have_attribute("data-status", "completed")
    expect(view.get_by_role("button", name="Cancel run")).to_have_count(0)
    page.screenshot(path=str(OUTPUT / "runview-cancelled.png"))

    described = cli_json(terminal, "pipeline", "describe", run_id)
    assert described["status"] == "cancelled"
    assert {s["name"]: s["status"] for s in described["steps"]} == {
        "prepare": "completed",
        "train": "cancelled",
        "evaluate": "skipped",
    }
    wait_for(lambda: not _kernels(lab.root), what="every kernel of the run to end")
    assert not kernel.is_running() or kernel.status() == psutil.STATUS_ZOMBIE


def test_a_failed_run_in_the_dark_theme_and_run_again(
    page: Any, lab: Lab, terminal: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    themes = lab.root.parent / "jupyter" / "settings" / "@jupyterlab" / "apputils-extension"
    themes.mkdir(parents=True, exist_ok=True)
    (themes / "themes.jupyterlab-settings").write_text('{"theme": "JupyterLab Dark"}')
    gauge = python_notebook(
        lab.root / "gauge.ipynb",
        "limit = 3.0",
        SETUP,
        LOAD,
        "%%step check\nif rain.mm.max() > limit:\n"
        '    raise ValueError(f"rain gauge reads {rain.mm.max()} mm, past its {limit} mm range")\n'
        "ok = True",
        "%%step publish\nprint(ok)",
    )
    notebook = nbformat.read(gauge, as_version=4)
    notebook.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(notebook, gauge)
    open_lab(page, lab)
    assert page.evaluate("document.body.dataset.jpThemeLight") == "false", "the dark theme"
    run_id = _start(lab, "gauge.ipynb", {"limit": 2.5}, no_cache=True)
    wait_for(
        lambda: cli_json(terminal, "pipeline", "describe", run_id)["status"] == "failed",
        timeout=90,
        what="the run to fail",
    )
    # as a step operator leaves it: the job that ran the step's try, with its console page
    with OpenStack.open(Registry.open(lab.root)) as stack:
        stack.metadata.step_job(run_id, "check", job_id="sm-check-try1", url=JOB_PAGE)
    view = open_run(page, run_id)
    expect(view).to_have_attribute("data-status", "failed", timeout=90_000)
    expect(_node(view, "check")).to_have_attribute("data-status", "failed")
    expect(_node(view, "publish")).to_have_attribute("data-status", "skipped")
    step = view.locator('.jp-stackmagic-runview-step[data-step="check"]')
    expect(step.locator(".jp-stackmagic-runview-error")).to_contain_text(
        "ValueError: rain gauge reads 3.1 mm, past its 2.5 mm range"
    )
    job = step.locator("a.jp-stackmagic-runview-job")
    expect(job).to_have_text("sm-check-try1")
    expect(job).to_have_attribute("href", JOB_PAGE)
    _node(view, "load").click()
    expect(view.locator('[data-output="rain"] .jp-stackmagic-preview-table')).to_be_visible()
    expect(view.locator('[data-output="file:rain.png"] img')).to_be_visible()
    _node(view, "check").click()
    expect(step.locator(".jp-stackmagic-runview-error")).to_be_visible()
    page.screenshot(path=str(OUTPUT / "runview-dark.png"))

    # "Run again" asks first, in the Run dialog filled in as this run was given;
    # a wider gauge range lets the same notebook pass, and the new run's view opens
    view.get_by_role("button", name="Run again").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Run gauge as a pipeline")
    expect(dialog.get_by_label("limit")).to_have_value("2.5")
    expect(dialog.get_by_label("No cache")).to_be_checked()
    expect(dialog.get_by_label("Steps to run")).to_have_value("")
    dialog.get_by_label("limit").fill("3.5")
    dialog.get_by_role("button", name="Run").click()
    again = page.locator(".jp-stackmagic-runview-page:visible")
    expect(again).not_to_have_attribute("data-run", run_id)
    expect(again).to_have_attribute("data-status", "completed", timeout=90_000)
    again_id = again.get_attribute("data-run") or ""
    described = cli_json(terminal, "pipeline", "describe", again_id)
    assert described["parameters"]["limit"] == 3.5
    assert described["options"]["no_cache"] is True
    assert described["notebook"] == cli_json(terminal, "pipeline", "describe", run_id)["notebook"]
    assert [r["id"] for r in cli_json(terminal, "pipeline", "runs")] == [again_id, run_id]


def _asks_for(run_id: str, url: str) -> bool:
    """Whether a request asks for the run (JupyterLab adds a query against caches)."""
    return urllib.parse.urlsplit(url).path.endswith(f"/stackmagic/api/runs/{run_id}")


def _stroke(node: Any) -> str:
    return str(node.locator("rect").evaluate("rect => getComputedStyle(rect).stroke"))


def _kernels(project: Path) -> list[psutil.Process]:
    """Processes the JupyterLab server of this test started in the project: kernels of steps."""
    found = []
    for process in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if Path(process.cwd()) == project and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
