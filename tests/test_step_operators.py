"""What every step operator shares, before any job starts: which steps go to it, and what
is refused in one line before a run is recorded (each backend's jobs: test_operator_*.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Result
from operator_pipeline import operator_notebook, register_operator_stack
from services import DB_CANARY, S3_CANARY, Database

from notebooks import write_notebook

#: a Kubernetes step operator: its requests are made without asking the cluster anything
KUBERNETES = ["--type=kubernetes", "--namespace=ml", "--store-secret=team-stores"]


def runs_of(terminal: Callable[..., Result]) -> list[object]:
    listed = terminal("pipeline", "runs", "--json")
    assert listed.code == 0, listed.err
    runs: list[object] = json.loads(listed.out)
    return runs


def test_a_step_naming_an_operator_the_stack_lacks_is_refused_before_anything_runs(
    project: Path, terminal: Callable[..., Result]
) -> None:
    assert terminal("init").code == 0
    operator_notebook(project)
    refused = terminal("pipeline", "run", "operated.ipynb")
    assert refused.code != 0
    [line] = refused.err.strip().splitlines()
    assert "step 'train' runs on step operator 'gpu', but stack 'default' has no step operator" in line
    assert "stackmagic stack update default -s gpu" in line
    assert runs_of(terminal) == [], "nothing was recorded, no step ran"


def test_the_wrong_operator_or_no_image_is_refused_in_one_line(
    project: Path,
    terminal: Callable[..., Result],
    team_database: Database,
    request: pytest.FixtureRequest,
) -> None:
    register_operator_stack(terminal, team_database, request, KUBERNETES)
    write_notebook(project / "other.ipynb", "%%step train --operator big\nx = 1")
    wrong = terminal("pipeline", "run", "other.ipynb")
    assert wrong.code != 0
    assert wrong.err.strip() == (
        "stackmagic: error: step 'train' runs on step operator 'big', but stack 'team' has "
        "'gpu': change the step's --operator, or the stack's (`stackmagic stack update team -s big`)"
    )

    operator_notebook(project)
    imageless = terminal("pipeline", "run", "operated.ipynb")
    assert imageless.code != 0
    [line] = imageless.err.strip().splitlines()
    assert "step 'train' runs on step operator 'gpu', which has no container image" in line
    assert "stackmagic step-operator update gpu --image=IMAGE" in line

    operator_notebook(project, "--image registry.example.com/train:2")
    assert terminal("pipeline", "run", "operated.ipynb", "--dry-run").code == 0, (
        "a step's own --image is enough"
    )
    assert runs_of(terminal) == []


def test_a_dry_run_shows_each_operator_steps_job_request_and_no_secret(
    project: Path,
    terminal: Callable[..., Result],
    team_database: Database,
    request: pytest.FixtureRequest,
) -> None:
    register_operator_stack(
        terminal, team_database, request, [*KUBERNETES, "--image=registry.example.com/train:1"]
    )
    operator_notebook(project, "--cpu 4 --memory 16G --gpu 1")
    shown = terminal("pipeline", "run", "operated.ipynb", "--dry-run", "--json")
    assert shown.code == 0, shown.err
    [(step, job)] = json.loads(shown.out)["requests"].items()
    assert step == "train", "prepare and evaluate run here, not as jobs"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/train:1"
    assert container["command"][:4] == ["python", "-m", "stackmagic.runtime", "job"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["envFrom"] == [{"secretRef": {"name": "team-stores"}}]
    text = terminal("pipeline", "run", "operated.ipynb", "--dry-run")
    assert "train job request" in text.out and "nothing was started or recorded" in text.out
    assert DB_CANARY not in shown.out + text.out and S3_CANARY not in shown.out + text.out
    assert runs_of(terminal) == []
