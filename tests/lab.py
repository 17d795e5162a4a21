"""A real JupyterLab driven through Debian's headless Chromium: fixtures and page helpers.

Each test starts ``jupyter lab`` on 127.0.0.1 in its own project folder, with
Jupyter's settings, workspaces and runtime files kept in the test's folder, and
drives the page with Playwright as a user would: clicks, forms, the toolbar.
What the page shows is then checked against the terminal (``stackmagic ...``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import on_kernel
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


def python_notebook(path: Path, *cells: str, parameters: str | None = None) -> Path:
    """A notebook as JupyterLab saves one: it names its kernel, so none is asked for."""
    written = write_notebook(path, *cells, parameters=parameters)
    return on_kernel(written, "python3", "Python 3", "python")


def open_lab(page: Any, lab: Lab, path: str = "lab") -> None:
    """Load JupyterLab and show the Stacks sidebar."""
    page.goto(lab.page_url(path))
    tab = page.locator('.jp-SideBar [data-id="stackmagic-sidebar"]')
    tab.wait_for(timeout=60_000)
    if not page.locator(SIDEBAR).is_visible():
        tab.click()
    page.locator(f"{SIDEBAR} .jp-stackmagic-stack").first.wait_for()


def open_run(page: Any, run_id: str) -> Any:
    """Open the run's view from its row in the sidebar, as a user does."""
    row = page.locator(f'{SIDEBAR} .jp-stackmagic-run[data-run="{run_id}"]')
    row.locator(".jp-stackmagic-run-title").click(timeout=60_000)
    view = page.locator(f'.jp-stackmagic-runview-page[data-run="{run_id}"]')
    view.wait_for()
    return view


def stack_item(page: Any, name: str) -> Any:
    return page.locator(f'{SIDEBAR} .jp-stackmagic-stack[data-stack="{name}"]')


def cli_json(terminal: Callable[..., Any], *args: str) -> Any:
    result = terminal(*args, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)
