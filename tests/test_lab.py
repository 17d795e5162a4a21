"""The lab extension in a real JupyterLab, driven through Debian's headless Chromium.

Each test starts ``jupyter lab`` on 127.0.0.1 in its own project folder, with
Jupyter's settings, workspaces and runtime files kept in the test's folder, and
drives the page with Playwright as a user would: clicks, forms, the toolbar.
What the page shows is then checked against the terminal (``stackmagic ...``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from services import HOST, free_port, serve, unavailable

from notebooks import write_notebook

#: Where screenshots go, beside the rest of the test output.
OUTPUT = Path(os.environ.get("STACKMAGIC_TEST_OUTPUT", Path(__file__).parents[1] / "test-output"))
#: DESIGN §4: these flags keep Chromium from reaching out to any other address.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SIDEBAR = "#stackmagic-sidebar"


@dataclass
class Lab:
    url: str
    token: str
    root: Path

    def page_url(self, path: str = "lab") -> str:
        return f"{self.url}/{path}?token={self.token}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright import sync_api
    except ImportError as error:
        unavailable(f"playwright is not installed ({error}): pip install playwright")
    chromium = shutil.which("chromium")
    if chromium is None:
        unavailable("chromium is not installed: apt-get install -y chromium")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def lab(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    """``jupyter lab`` serving the project folder, with nothing of the user's Jupyter setup."""
    jupyter = tmp_path / "jupyter"
    for variable, folder in (
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_DATA_DIR", "data"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipython"),
    ):
        monkeypatch.setenv(variable, str(jupyter / folder))
    port, token = free_port(), "stackmagic-test-token"
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--ip={HOST}",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={project}",
        f"--LabApp.workspaces_dir={jupyter / 'workspaces'}",
        f"--LabApp.user_settings_dir={jupyter / 'settings'}",
        # nothing may ask the internet about news or newer releases
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--allow-root",
    ]
    # JupyterLab would ask (in a toast over the page) whether to fetch news
    notification = jupyter / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    with serve("jupyter-lab", argv, port, jupyter):
        url = f"http://{HOST}:{port}"
        _wait_until_ready(f"{url}/api/status?token={token}")
        yield Lab(url, token, project)


def _wait_until_ready(status_url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(status_url, timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def page(browser: Any, lab: Lab) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    yield opened
    context.close()


def python_notebook(path: Path, *cells: str) -> Path:
    """A notebook as JupyterLab saves one: it names its kernel, so none is asked for."""
    import nbformat

    write_notebook(path, *cells)
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(notebook, path)
    return path


def open_lab(page: Any, lab: Lab, path: str = "lab") -> None:
    """Load JupyterLab and show the Stacks sidebar."""
    page.goto(lab.page_url(path))
    tab = page.locator('.jp-SideBar [data-id="stackmagic-sidebar"]')
    tab.wait_for(timeout=60_000)
    if not page.locator(SIDEBAR).is_visible():
        tab.click()
    page.locator(f"{SIDEBAR} .jp-stackmagic-stack").first.wait_for()


def stack_item(page: Any, name: str) -> Any:
    return page.locator(f'{SIDEBAR} .jp-stackmagic-stack[data-stack="{name}"]')


def cli_json(terminal: Callable[..., Any], *args: str) -> Any:
    result = terminal(*args, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_sidebar_shows_default_active_and_a_click_activates_another_stack(
    page: Any, lab: Lab, terminal: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    assert (
        terminal(
            "stack", "register", "other", "-m", "default", "-a", "default", "-o", "default"
        ).code
        == 0
    )
    open_lab(page, lab)
    expect(stack_item(page, "default")).to_have_attribute("aria-current", "true")
    expect(stack_item(page, "default").locator(".jp-stackmagic-badge")).to_have_text("active")
    expect(stack_item(page, "other")).not_to_have_attribute("aria-current", "true")

    stack_item(page, "other").click()
    expect(stack_item(page, "other")).to_have_attribute("aria-current", "true")
    assert terminal("stack", "get").out.strip() == "other", "the terminal agrees with the click"

    # a `stack set` in a terminal, then a `%stack set` in a notebook's kernel, show in the sidebar
    assert terminal("stack", "set", "default").code == 0
    set_at = time.monotonic()
    expect(stack_item(page, "default")).to_have_attribute("aria-current", "true", timeout=10_000)
    print(f"the sidebar showed a terminal's `stack set` after {time.monotonic() - set_at:.2f} s")

    python_notebook(lab.root / "switch.ipynb", "%load_ext stackmagic\n%stack set other")
    page.goto(lab.page_url("lab/tree/switch.ipynb"))
    # keys typed before the notebook has its kernel can be lost: wait for it
    expect(page.locator(".jp-StatusBar-Widget", has_text="| Idle")).to_be_visible(timeout=90_000)
    page.locator(".jp-Notebook .jp-CodeCell .jp-InputArea-editor").first.click()
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-OutputArea-output", has_text="Active stack: other")
    expect(output).to_be_visible(timeout=30_000)
    expect(stack_item(page, "other")).to_have_attribute("aria-current", "true", timeout=10_000)
    assert terminal("stack", "get").out.strip() == "other"


def test_a_stack_whose_metadata_store_is_away_says_so_and_can_be_left(
    page: Any, lab: Lab, terminal: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    closed_port = str(free_port())  # nothing listens there
    assert (
        terminal(
            "metadata-store",
            "register",
            "away",
            "--type=mysql",
            f"--host={HOST}",
            f"--port={closed_port}",
            "--database=x",
            "--username=root",
        ).code
        == 0
    )
    assert (
        terminal("stack", "register", "broken", "-m", "away", "-a", "default", "-o", "default").code
        == 0
    )
    open_lab(page, lab)
    stack_item(page, "broken").click()
    runs_problem = page.get_by_role("alert", name="Runs unavailable")
    expect(runs_problem).to_contain_text("cannot open the metadata store mysql://root@")
    expect(runs_problem).to_contain_text("check that the server is running")

    stack_item(page, "default").click()  # the stacks stay usable
    expect(stack_item(page, "default")).to_have_attribute("aria-current", "true")
    expect(runs_problem).to_be_hidden()
    assert terminal("stack", "get").out.strip() == "default"


def test_components_and_stacks_registered_through_the_forms_appear_in_the_cli(
    page: Any, lab: Lab, terminal: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    canary = "sidebar-canary-Zq81xx"
    answers: list[str] = []
    page.on("response", lambda response: answers.append(_body(response)))
    open_lab(page, lab)

    page.get_by_role("button", name="Register a component").click()
    form = page.get_by_role("form", name="Register a component")
    form.locator('select[name="type"]').select_option("artifact-store")
    form.locator('select[name="flavor"]').select_option("s3")
    form.locator('input[name="name"]').fill("bucket")
    form.locator('input[name="path"]').fill("s3://team-bucket/runs")
    secret = form.locator('input[name="secret-access-key"]')
    assert secret.get_attribute("type") == "password", "secret inputs are masked"
    secret.fill(canary)
    form.get_by_role("button", name="Register").click()
    expect(form).to_be_hidden()

    listed = {c["name"]: c for c in cli_json(terminal, "artifact-store", "list")}
    assert listed["bucket"]["flavor"] == "s3"
    assert listed["bucket"]["options"]["path"] == "s3://team-bucket/runs"
    assert listed["bucket"]["options"]["secret_access_key"] == "********"

    # a bad form gets the server's one-line reason, and nothing is registered
    page.get_by_role("button", name="Register a component").click()
    form.locator('select[name="flavor"]').select_option("s3")
    form.locator('input[name="name"]').fill("nopath")
    form.locator('input[name="path"]').evaluate("input => input.removeAttribute('required')")
    form.get_by_role("button", name="Register").click()
    expect(form.get_by_role("alert")).to_contain_text("--path")
    assert "nopath" not in {c["name"] for c in cli_json(terminal, "artifact-store", "list")}
    form.get_by_role("button", name="Cancel").click()

    page.get_by_role("button", name="Register a stack").click()
    stack_form = page.get_by_role("form", name="Register a stack")
    stack_form.locator('input[name="name"]').fill("team")
    stack_form.locator('select[name="artifact-store"]').select_option("bucket")
    stack_form.get_by_role("button", name="Register").click()
    expect(stack_item(page, "team")).to_contain_text("bucket (s3)")
    team = cli_json(terminal, "stack", "describe", "team")
    assert {c["type"]: c["name"] for c in team["components"]}["artifact-store"] == "bucket"

    page.wait_for_timeout(1500)  # a few more polls of the sidebar
    assert canary not in page.content(), "the secret is not in the page"
    assert answers and not [a for a in answers if canary in a], "no response carries the secret"


def _body(response: Any) -> str:
    try:
        return response.text()
    except Exception:  # noqa: BLE001 - redirects and aborted requests have no body
        return ""


def test_run_as_pipeline_from_the_toolbar_ends_in_a_succeeded_run_in_the_sidebar(
    page: Any, lab: Lab, terminal: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    # a second stack, so the sidebar's picture shows how stacks differ
    assert terminal("orchestrator", "register", "kfp", "--type=kubeflow", "--mode=local").code == 0
    assert (
        terminal(
            "stack", "register", "kfp-local", "-m", "default", "-a", "default", "-o", "kfp"
        ).code
        == 0
    )
    python_notebook(
        lab.root / "small.ipynb",
        "%%step first\nvalue = 41",
        "%%step second\nanswer = value + 1\nprint('answer', answer)",
    )
    open_lab(page, lab, "lab/tree/small.ipynb")
    page.get_by_role("button", name="Run as pipeline").click()
    finished = page.locator(f'{SIDEBAR} .jp-stackmagic-run[data-status="completed"]')
    expect(finished).to_have_count(1, timeout=120_000)
    expect(page.locator(".jp-toast-message", has_text="completed in")).to_be_visible()

    runs = cli_json(terminal, "pipeline", "runs")
    assert [(r["id"], r["status"]) for r in runs] == [
        (finished.get_attribute("data-run"), "completed")
    ]
    expect(finished).to_contain_text("small")
    expect(finished).to_contain_text("2/2 steps")
    expect(finished).to_contain_text("default")

    finished.locator(".jp-stackmagic-run-title").click()
    finished.locator('[data-step="second"] a').click()
    executed = page.locator(".jp-NotebookPanel:visible", has_text="answer = value + 1")
    expect(executed.locator(".jp-OutputArea-output", has_text="answer 42")).to_be_visible()
    expect(executed.get_by_role("button", name="Run as pipeline")).to_have_count(0)

    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.locator(f"{SIDEBAR} .jp-stackmagic-sidebar").screenshot(path=str(OUTPUT / "sidebar.png"))
    page.screenshot(path=str(OUTPUT / "lab.png"))


def test_mark_cell_as_step_from_the_cell_context_menu(page: Any, lab: Lab) -> None:
    from playwright.sync_api import expect

    python_notebook(lab.root / "plain.ipynb", "x = 1", "y = x + 1")
    open_lab(page, lab, "lab/tree/plain.ipynb")
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    cells.nth(1).locator(".jp-InputArea-editor").click(button="right")
    page.locator(".lm-Menu-item", has_text="Mark Cell as Step").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog.locator("input")).to_have_value("step1")
    dialog.locator("input").fill("train")
    dialog.get_by_role("button", name="Mark").click()
    expect(cells.nth(1).locator(".jp-InputArea-editor")).to_contain_text("%%step train")
    expect(cells.nth(1).locator(".jp-InputArea-editor")).to_contain_text("y = x + 1")

    # a name %%step would refuse is refused here, and the cell keeps its source
    cells.nth(0).locator(".jp-InputArea-editor").click(button="right")
    page.locator(".lm-Menu-item", has_text="Mark Cell as Step").click()
    dialog.locator("input").fill("1st step")
    dialog.get_by_role("button", name="Mark").click()
    expect(page.locator(".jp-toast-message", has_text="cannot name a step")).to_be_visible()
    expect(cells.nth(0).locator(".jp-InputArea-editor")).not_to_contain_text("%%step")


@pytest.mark.parametrize("listing", [["labextension", "list"], ["server", "extension", "list"]])
def test_the_install_enables_both_extensions(listing: list[str]) -> None:
    """What `pip install stackmagic` must leave: JupyterLab finds and enables both halves."""
    listed = subprocess.run(
        [sys.executable, "-m", "jupyter", *listing],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    lines = [line for line in (listed.stdout + listed.stderr).splitlines() if "stackmagic" in line]
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", " ".join(lines)).split())  # no colours
    assert "enabled" in text and "OK" in text, text
