"""How a failure is recorded: the step that failed says why, the steps after it never run.

Real kernels, real stores; the full disk is a real small filesystem, mounted in
a mount namespace of the run's own, so nothing outside the test sees it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIN
from namespaces import unshare

from notebooks import write_notebook

pytestmark = pytest.mark.kernel


def run_json(terminal, *args: str) -> list | dict:
    result = terminal(*args, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_a_step_ordered_after_a_failed_one_never_runs(initialised: Path, terminal) -> None:
    notebook = write_notebook(
        initialised / "ordered.ipynb",
        "%%step fail\nraise RuntimeError('no data today')",
        "%%step publish --after fail\nopen('published.txt', 'w').write('done')",
    )
    assert terminal("pipeline", "run", str(notebook)).code == 1
    steps = run_json(terminal, "pipeline", "describe", "latest")["steps"]
    assert [(s["name"], s["status"]) for s in steps] == [("fail", "failed"), ("publish", "skipped")]
    assert steps[1]["error"] == "step 'fail' failed"
    assert not (initialised / "published.txt").exists(), "a step after a failed one ran"


@pytest.fixture
def own_mounts() -> list[str]:
    """The command that starts a process with mounts of its own, where it may mount a tmpfs."""
    return unshare("--mount", what="mount namespace")


def test_a_step_whose_notebook_the_full_store_cannot_keep_fails(
    initialised: Path, terminal, own_mounts: list[str]
) -> None:
    store = initialised / "small-store"
    store.mkdir()
    for command in (
        ["artifact-store", "register", "small", "--type=local", f"--path={store}"],
        ["stack", "register", "small", "-m", "default", "-a", "small", "-o", "default"],
        ["stack", "set", "small"],
    ):
        assert terminal(*command).code == 0
    notebook = write_notebook(
        initialised / "chatty.ipynb",  # its executed notebook holds 400 kB of printed text
        "%%step talk\nx = 1\nprint('y' * 400_000)",
        "%%step use\ny = x + 1",
        "%%step publish --after talk\nopen('published.txt', 'w').write('done')",
    )
    run = subprocess.run(
        [
            *own_mounts,
            "sh",
            "-c",
            'mount -t tmpfs -o size=300k tmpfs "$1" && "$2" pipeline run "$3"',
            "sh",
            str(store),
            str(BIN / "stackmagic"),
            str(notebook),
        ],
        cwd=initialised,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr
    [record] = run_json(terminal, "pipeline", "runs")
    described = run_json(terminal, "pipeline", "describe", record["id"])
    steps = {step["name"]: step for step in described["steps"]}
    assert {name: step["status"] for name, step in steps.items()} == {
        "talk": "failed",
        "use": "skipped",
        "publish": "skipped",
    }
    expected = (
        f"could not save its executed notebook to {store}/chatty/{record['id']}/talk/talk.ipynb"
    )
    assert steps["talk"]["error"].startswith(expected)
    assert "No space left on device" in steps["talk"]["error"]
    assert steps["talk"]["notebook"] is None, "no record points at a notebook that was not kept"
    assert described["status"] == "failed"
    assert described["error"].startswith(f"step 'talk' failed: {expected}")
    assert not (initialised / "published.txt").exists()


@pytest.mark.parametrize(("field", "name"), [("pipeline", "../../x"), ("step", "../x")])
def test_a_bundle_whose_names_leave_the_store_is_refused_before_anything_is_recorded(
    initialised: Path, terminal, field: str, name: str
) -> None:
    notebook = write_notebook(initialised / "nb.ipynb", "%%step a\nx = 1", "%%step b\ny = x + 1")
    bundle = initialised / "bundle"
    assert (
        terminal("pipeline", "export", str(notebook), "--to", "bundle", "-o", str(bundle)).code == 0
    )
    manifest = json.loads((bundle / "manifest.json").read_text())
    if field == "pipeline":
        manifest["pipeline"] = name
    else:
        manifest["steps"][0]["name"] = name
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    run = subprocess.run(
        [sys.executable, "-m", "stackmagic.runtime", "run", str(bundle)],
        cwd=initialised,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"python -m stackmagic.runtime: error: the bundle in {bundle} names a {field} {name!r}, "
        f"which is no {field} name (letters, digits, - and _ only); export it again from its "
        "notebook (`stackmagic pipeline export NOTEBOOK --to bundle -o DIR`)"
    ]
    assert run_json(terminal, "pipeline", "runs") == []
    assert not list((initialised / ".stackmagic").rglob("*.zip")), "the bundle was stored"
