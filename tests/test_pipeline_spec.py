"""A saved notebook becomes a pipeline spec: steps, inputs, outputs, DAG, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from notebooks import write_notebook
from stackmagic.errors import StackmagicError
from stackmagic.notebook import load_pipeline


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    return write_notebook(
        tmp_path / "demo.ipynb",
        "import math\nSCALE = 2\ndef helper(x):\n    return x * SCALE",
        "# md: ## Load the data",
        "%%step load\ndata = [helper(i) for i in range(10)]\n!echo loaded\nfor i in range(3):\n    pass",
        "%%step train --after load --cpu 2 --memory 4G --retries 2\n%time model = sum(data) * lr",
        "peek = data[:3]\npeek",
        "%%step train\nmodel = model + epochs",
        "%%step evaluate\nscore = model / len(data)\ni = 0\nprint(score, math.pi)",
        "%%step report --after evaluate\nprint('done')",
        parameters="lr = 0.1\nepochs = 3",
    )


def test_steps_inputs_outputs_and_dag(demo: Path) -> None:
    spec = load_pipeline(demo)
    assert spec.name == "demo"
    assert spec.parameters == {"lr": 0.1, "epochs": 3}
    assert list(spec.steps) == ["load", "train", "evaluate", "report"]

    load, train, evaluate, report = spec.steps.values()
    assert load.inputs == {} and load.outputs == ["data"]
    assert train.cells == [4, 6], "a step split over two cells is one step, in order"
    assert train.inputs == {"data": "load"}, (
        "%time's code is analysed; model is bound within the step"
    )
    assert train.parameters == ["epochs", "lr"]
    assert train.outputs == ["model"]
    assert evaluate.inputs == {"data": "load", "model": "train"}
    assert "i" not in evaluate.inputs, "a name the step binds before reading is no input"
    assert report.upstream == ["evaluate"], "--after adds an edge without data"
    assert spec.order() == ["load", "train", "evaluate", "report"]
    assert (
        train.settings.cpu == "2" and train.settings.memory == "4G" and train.settings.retries == 2
    )


def test_source_hash_changes_with_setup_and_body(demo: Path, tmp_path: Path) -> None:
    before = load_pipeline(demo)
    text = demo.read_text().replace("SCALE = 2", "SCALE = 3")
    changed = tmp_path / "changed.ipynb"
    changed.write_text(text)
    after = load_pipeline(changed)
    assert before.source_hash("load") != after.source_hash("load")
    assert before.source_hash("report") != after.source_hash("report"), (
        "setup is part of every step"
    )


def test_exploration_cell_is_left_out_with_a_warning(tmp_path: Path) -> None:
    notebook = write_notebook(
        tmp_path / "explore.ipynb",
        "%%step load\nraw = list(range(5))",
        "cleaned = [x for x in raw if x]",
        "%%step train\nmodel = sum(cleaned)",
    )
    spec = load_pipeline(notebook)
    assert spec.steps["train"].inputs == {}
    (warning,) = spec.warnings
    assert "'cleaned'" in warning and "cell 2" in warning and "make it a step" in warning


@pytest.mark.parametrize("setup", ["from math import *", "%run helpers.py"])
def test_setup_that_binds_unlisted_names_allows_them(tmp_path: Path, setup: str) -> None:
    notebook = write_notebook(tmp_path / "opaque.ipynb", setup, "%%step a\nx = floor(pi)")
    assert load_pipeline(notebook).steps["a"].inputs == {}
    plain = write_notebook(tmp_path / "plain.ipynb", "import math", "%%step a\nx = floor(pi)")
    with pytest.raises(StackmagicError, match="reads 'floor'"):
        load_pipeline(plain)


@pytest.mark.parametrize(
    "cells, message",
    [
        (["x = 1", "print(x)"], "has no steps: start a code cell with `%%step NAME`"),
        (["%%step a\ny = undefined_thing + 1"], "reads 'undefined_thing', which no setup cell"),
        (
            ["%%step a\nx = y", "%%step b\ny = 1"],
            "reads 'y', which no setup cell, parameter or earlier step",
        ),
        (["%%step a --after b\nx = 1", "%%step b\ny = x"], "the steps form a cycle: a -> b -> a"),
        (["%%step a --after nope\nx = 1"], "runs --after 'nope', which is no step"),
        (["%%step a --after a\nx = 1"], "cannot run --after itself"),
        (
            ["%%step a --cpu 2\nx = 1", "%%step a --cpu 4\ny = 2"],
            "declared again with other settings",
        ),
        (["%%step Train\nx = 1", "%%step train\ny = 2"], "differs from step 'Train' only in case"),
        (["%%step 2fast\nx = 1"], "invalid step name '2fast'"),
        (["%%step a --memory lots\nx = 1"], "--memory expects a size such as 512M"),
        (["%%step a --gpu -1\nx = 1"], "--gpu"),
        (["%%step\nx = 1"], "the following arguments are required: NAME"),
        (["%%step a\nx = (1,"], "cell 1 of bad.ipynb (step 'a') has a syntax error at line 1"),
    ],
)
def test_mistakes_give_one_clear_error(tmp_path: Path, cells: list[str], message: str) -> None:
    notebook = write_notebook(tmp_path / "bad.ipynb", *cells)
    with pytest.raises(StackmagicError) as raised:
        load_pipeline(notebook)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_unreadable_and_missing_notebooks(tmp_path: Path) -> None:
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [')
    with pytest.raises(StackmagicError, match="is not a readable notebook"):
        load_pipeline(broken)
    with pytest.raises(StackmagicError, match="no notebook at"):
        load_pipeline(tmp_path / "missing.ipynb")
    not_a_notebook = tmp_path / "list.ipynb"
    not_a_notebook.write_text("[1, 2]")
    with pytest.raises(StackmagicError, match="has no list of cells"):
        load_pipeline(not_a_notebook)


def test_pipeline_show_in_a_terminal(project: Path, demo: Path, terminal) -> None:
    shown = terminal("pipeline", "show", str(demo))
    assert shown.code == 0, shown.err
    assert "load -> train  [data]" in shown.out
    assert "evaluate -> report" in shown.out
    as_json = json.loads(terminal("pipeline", "show", str(demo), "--json").out)
    assert [step["name"] for step in as_json["steps"]] == ["load", "train", "evaluate", "report"]
    assert as_json["steps"][1]["settings"] == {
        "after": ["load"],
        "cpu": "2",
        "memory": "4G",
        "retries": 2,
    }

    missing = terminal("pipeline", "show")
    assert missing.code == 2 and "which notebook?" in missing.err
    bad = terminal("pipeline", "show", str(demo.with_name("nope.ipynb")))
    assert bad.code == 2 and bad.err.count("\n") == 1


@pytest.mark.parametrize(
    "line, said",
    [
        ("--retries 1000000000", "--retries expects a whole number from 0 to 100"),
        ("--gpu 99999999999999999999999999", "--gpu expects a whole number from 0 to 64"),
    ],
)
def test_step_counts_no_machine_has_are_refused(tmp_path: Path, line: str, said: str) -> None:
    notebook = write_notebook(tmp_path / "big.ipynb", f"%%step a {line}\nx = 1")
    with pytest.raises(StackmagicError, match=said):
        load_pipeline(notebook)
