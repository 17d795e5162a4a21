"""The sidebar and the notebook toolbar in a real JupyterLab, driven through headless Chromium.

The fixtures (``lab``, ``page``, ``browser``) are in ``lab.py``. What the page
shows is checked against the terminal (``stackmagic ...``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from lab import OUTPUT, SIDEBAR, Lab, cli_json, open_lab, python_notebook, stack_item
from services import HOST, free_port


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

    # every section folds, and stays as it was left after a reload
    components = page.locator(f'{SIDEBAR} [data-section="components"]')
    expect(components.locator("[data-component]")).to_have_count(0)  # folded at first
    components.get_by_role("button", name="Components").click()
    expect(components.locator('[data-component="default"]')).to_have_count(3)
    page.locator(f'{SIDEBAR} [data-section="stacks"]').get_by_role("button", name="Stacks").click()
    expect(stack_item(page, "default")).to_be_hidden()
    page.reload()
    page.locator(f'{SIDEBAR} [data-section="components"] [data-component]').first.wait_for()
    expect(stack_item(page, "default")).to_be_hidden()
    page.locator(f'{SIDEBAR} [data-section="stacks"]').get_by_role("button", name="Stacks").click()
    expect(stack_item(page, "other")).to_be_visible()

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

    page.get_by_title("Register a component").click()
    form = page.get_by_role("form", name="Register a component")
    form.get_by_label("Type").select_option("artifact-store")
    form.get_by_label("Flavor").select_option("s3")
    form.get_by_label("Name").fill("bucket")
    # labels read as words; help (the flavor's own) sits under each field; required is marked
    path = form.get_by_role("textbox", name="Path", exact=True)
    expect(path).to_have_attribute("name", "path")
    expect(path).to_have_accessible_description(re.compile(r"s3://bucket"))
    expect(form.locator('[data-field="path"] .jp-stackmagic-required')).to_be_visible()
    expect(form.locator('[data-field="region"] .jp-stackmagic-required')).to_have_count(0)
    expect(form).not_to_contain_text("--path")
    path.fill("team-bucket/runs")  # no s3:// : the server refuses it, under the field
    form.get_by_role("button", name="Register").click()
    expect(form.locator('[data-field="path"] .jp-stackmagic-field-error')).to_have_text(
        "Expects a URL like s3://bucket/dir, not 'team-bucket/runs'."
    )
    expect(path).to_have_attribute("aria-invalid", "true")
    expect(path).to_be_focused()  # the refused field comes into view
    expect(form.get_by_role("alert")).to_have_count(0)  # said once, where it belongs
    path.fill("s3://team-bucket/runs")
    secret = form.get_by_label("Secret access key")
    assert secret.get_attribute("type") == "password", "secret inputs are masked"
    expect(secret).to_have_accessible_description(re.compile("env:VARIABLE"))
    secret.fill(canary)
    form.get_by_role("button", name="Register").click()
    expect(form).to_be_hidden()
    expect(
        page.locator(".jp-toast-message", has_text="Registered the artifact store bucket")
    ).to_be_visible()

    listed = {c["name"]: c for c in cli_json(terminal, "artifact-store", "list")}
    assert listed["bucket"]["flavor"] == "s3"
    assert listed["bucket"]["options"]["path"] == "s3://team-bucket/runs"
    assert listed["bucket"]["options"]["secret_access_key"] == "********"

    # a missing required value gets the server's reason under its field; nothing is registered
    page.get_by_title("Register a component").click()
    form.get_by_label("Flavor").select_option("s3")
    form.get_by_label("Name").fill("nopath")
    form.locator('input[name="path"]').evaluate("input => input.removeAttribute('required')")
    form.get_by_role("button", name="Register").click()
    expect(form.locator('[data-field="path"] .jp-stackmagic-field-error')).to_have_text(
        "Path is required."
    )
    assert "nopath" not in {c["name"] for c in cli_json(terminal, "artifact-store", "list")}
    form.get_by_role("button", name="Cancel").click()

    page.get_by_title("Register a stack").click()
    stack_form = page.get_by_role("form", name="Register a stack")
    stack_form.get_by_label("Name").fill("team")
    stack_form.get_by_label("Artifact store").select_option("bucket")
    stack_form.get_by_role("button", name="Register").click()
    expect(stack_item(page, "team")).to_contain_text("bucket (s3)")
    team = cli_json(terminal, "stack", "describe", "team")
    assert {c["type"]: c["name"] for c in team["components"]}["artifact-store"] == "bucket"
    # the success message offers to make the new stack the active one
    registered = page.locator(".Toastify__toast", has_text="Registered the stack team")
    registered.locator(".jp-toast-button", has_text="Activate now").click()
    expect(stack_item(page, "team")).to_have_attribute("aria-current", "true")
    assert terminal("stack", "get").out.strip() == "team"

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
    page.locator(".jp-Dialog").get_by_role("button", name="Run").click()
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

    finished.get_by_role("button", name="Show the steps").click()
    finished.locator('[data-step="second"] a').click()
    executed = page.locator(".jp-NotebookPanel:visible", has_text="answer = value + 1")
    expect(executed.locator(".jp-OutputArea-output", has_text="answer 42")).to_be_visible()
    expect(executed.get_by_role("button", name="Run as pipeline")).to_have_count(0)

    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.locator(SIDEBAR).screenshot(path=str(OUTPUT / "sidebar-steps.png"))
    page.screenshot(path=str(OUTPUT / "sidebar-lab.png"))


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
