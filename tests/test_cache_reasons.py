"""A cache that explains itself: each step that runs says why, before and after the run.

Real kernels on the default local stack. Each test keeps one project and
changes one thing at a time; for each change ``pipeline show --cache`` is
asked first, then the run's progress lines, its steps table and
``pipeline describe --json`` must all say the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Result

from notebooks import write_notebook
from stackmagic.registry import Registry

pytestmark = pytest.mark.kernel

CLI = Callable[..., Result]
LOAD = "rows = [int(x) for x in open('data.csv').read().split()]"


def demo(
    folder: Path,
    *,
    setup: str = "SCALE = 2",
    load: str = LOAD,
    train: str = "model = sum(df) + seed",
    above: tuple[str, ...] = (),
) -> Path:
    """Cell 1 the parameters, then ``above``, the setup, and the steps load, clean, train."""
    return write_notebook(
        folder / "demo.ipynb",
        *above,
        setup,
        f"%%step load\n{load}",
        "%%step clean\ndf = [r * SCALE for r in rows]",
        f"%%step train\n{train}",
        parameters="seed = 1",
    )


@pytest.fixture
def project_with_data(project: Path) -> Path:
    Registry.init(project)
    (project / "data.csv").write_text("1 2 3\n")
    return project


def foreseen(cli: CLI, notebook: Path, *options: str) -> dict[str, str]:
    """What ``pipeline show --cache`` says each step would do: ``cached``, or why it would run."""
    shown = cli("pipeline", "show", str(notebook), "--cache", "--json", *options)
    assert shown.code == 0, shown.err
    return {
        step["name"]: "cached" if step["cached"] else step["reason"]
        for step in json.loads(shown.out)
    }


def ran(cli: CLI, notebook: Path, *options: str) -> dict[str, str]:
    """Run it; each step's ``cached`` or why it ran, as the progress lines, the steps table
    and ``pipeline describe --json`` say it (they must agree)."""
    result = cli("pipeline", "run", str(notebook), "--progress", "lines", *options)
    assert result.code == 0, result.err
    described = json.loads(cli("pipeline", "describe", "latest", "--json").out)
    said = {step["name"]: step["reason"] or step["status"] for step in described["steps"]}
    progress = result.err.splitlines()
    rows = {line.split()[0]: line for line in result.out.splitlines()[-len(said) :]}  # the steps
    for name, reason in said.items():
        if reason == "cached":
            assert f"  {name}: cached" in progress, result.err
        elif reason != "skipped":  # not part of the run (--only)
            assert f"  {name}: running — {reason}" in progress, result.err
            assert rows[name].split()[1] == "completed" and f"  {reason}  " in rows[name], rows
    return said


def test_code_setup_and_parameter_changes_name_themselves(
    project_with_data: Path, cli: CLI
) -> None:
    notebook = demo(project_with_data)
    assert foreseen(cli, notebook) == {
        "load": "first run",
        "clean": "runs after load (which re-runs)",
        "train": "runs after clean (which re-runs)",
    }
    assert ran(cli, notebook) == dict.fromkeys(["load", "clean", "train"], "first run")

    demo(project_with_data, train="model = sum(df) + seed + 1")
    shown = cli("pipeline", "show", str(notebook), "--cache")
    assert shown.out.splitlines()[0] == "Pipeline demo (demo.ipynb), if run now on stack default:"
    assert shown.out.splitlines()[-1].split(None, 1) == ["train", "code changed (cell 5)"]
    assert (
        foreseen(cli, notebook)
        == ran(cli, notebook)
        == {"load": "cached", "clean": "cached", "train": "code changed (cell 5)"}
    )

    # a markdown cell above moves the numbers, not the code
    demo(project_with_data, train="model = sum(df) + seed + 1", above=("# md: A title",))
    assert foreseen(cli, notebook) == dict.fromkeys(["load", "clean", "train"], "cached")

    demo(
        project_with_data,
        setup="SCALE = 3",
        train="model = sum(df) + seed + 1",
        above=("# md: A title",),
    )
    assert foreseen(cli, notebook) == {
        "load": "setup changed (cell 3)",
        "clean": "runs after load (which re-runs)",
        "train": "runs after clean (which re-runs)",
    }
    assert ran(cli, notebook) == dict.fromkeys(["load", "clean", "train"], "setup changed (cell 3)")

    assert (
        foreseen(cli, notebook, "-p", "seed", "5")
        == ran(cli, notebook, "-p", "seed", "5")
        == {"load": "cached", "clean": "cached", "train": "parameter seed changed"}
    )
    listed = json.loads(cli("pipeline", "runs", "--limit", "1", "--json").out)
    assert [step["reason"] for step in listed[0]["steps"]] == [None, None, "parameter seed changed"]


def test_files_inputs_deleted_outputs_and_flags_name_themselves(
    project_with_data: Path, cli: CLI
) -> None:
    notebook = demo(project_with_data)
    ran(cli, notebook)

    (project_with_data / "data.csv").write_text("1 2 4\n")
    assert foreseen(cli, notebook) == {
        "load": "file data.csv changed",
        "clean": "runs after load (which re-runs)",
        "train": "runs after clean (which re-runs)",
    }
    changed_data = ran(cli, notebook)
    assert changed_data == {
        "load": "file data.csv changed",
        "clean": "input rows changed (from load)",
        "train": "input df changed (from clean)",
    }
    made_model = json.loads(cli("pipeline", "describe", "latest", "--json").out)

    # the same rows from new code: the steps after it come from the cache after all
    demo(project_with_data, load=LOAD + "  # the same rows")
    assert foreseen(cli, notebook)["load"] == "code changed (cell 3)"
    assert ran(cli, notebook) == {
        "load": "code changed (cell 3)",
        "clean": "cached",
        "train": "cached",
    }

    train = next(step for step in made_model["steps"] if step["name"] == "train")
    Path(train["outputs"]["model"]["uri"]).unlink()
    gone = f"cached outputs are gone (run {made_model['id']})"
    assert (
        foreseen(cli, notebook)
        == ran(cli, notebook)
        == {"load": "cached", "clean": "cached", "train": gone}
    )

    assert ran(cli, notebook, "--from", "clean") == {
        "load": "cached",
        "clean": "forced by --from",
        "train": "forced by --from",
    }
    assert ran(cli, notebook, "--only", "clean") == {
        "load": "cached",
        "clean": "forced by --only",
        "train": "skipped",
    }
    assert ran(cli, notebook, "--no-cache") == dict.fromkeys(
        ["load", "clean", "train"], "--no-cache"
    )
    shown_alone = cli("pipeline", "show", str(notebook), "-p", "seed", "2")
    assert shown_alone.code == 2 and "-p and --stack go with --cache" in shown_alone.err


def test_an_edited_module_beside_the_notebook_reruns_the_step_that_imports_it(
    project_with_data: Path, cli: CLI
) -> None:
    import stackmagic

    helpers = project_with_data / "helpers.py"
    helpers.write_text("def scale(values):\n    return [v * 2 for v in values]\n")
    notebook = write_notebook(
        project_with_data / "helped.ipynb",
        f"%%step load\n{LOAD}",
        "%%step clean\nfrom helpers import scale\ndf = scale(rows)",
    )
    assert stackmagic.run(notebook).outputs("clean")["df"] == [2, 4, 6]
    assert foreseen(cli, notebook) == {"load": "cached", "clean": "cached"}

    helpers.write_text("def scale(values):\n    return [v * 3 for v in values]\n")
    assert foreseen(cli, notebook) == {
        "load": "file helpers.py changed",
        "clean": "runs after load (which re-runs)",
    }
    edited = stackmagic.run(notebook)
    assert {name: (step.status, step.reason) for name, step in edited.steps.items()} == {
        name: ("completed", "file helpers.py changed") for name in ("load", "clean")
    }, "a module no step names as a file matters to every step"
    assert edited.outputs("clean")["df"] == [3, 6, 9], "the step ran the edited function"


def test_what_a_step_saves_and_its_settings_name_themselves(
    project_with_data: Path, cli: CLI
) -> None:
    def steps(train: str, clean_settings: str = "") -> Path:
        return write_notebook(
            project_with_data / "saved.ipynb",
            f"%%step load\n{LOAD}",
            f"%%step clean{clean_settings}\ndf = [r * 2 for r in rows]\ntotal = sum(df)",
            f"%%step train\n{train}",
        )

    notebook = steps("model = len(df)")
    ran(cli, notebook)
    steps("model = len(df) + total")  # clean now saves total for train as well
    assert foreseen(cli, notebook)["clean"] == "outputs changed"
    assert ran(cli, notebook) == {
        "load": "cached",
        "clean": "outputs changed",
        "train": "code changed (cell 3)",
    }
    steps("model = len(df) + total", clean_settings=" --cpu 2")
    assert foreseen(cli, notebook) == {
        "load": "cached",
        "clean": "settings changed",
        "train": "runs after clean (which re-runs)",
    }
    assert ran(cli, notebook) == {
        "load": "cached",
        "clean": "settings changed",
        "train": "cached",
    }, "clean made the same df and total"
