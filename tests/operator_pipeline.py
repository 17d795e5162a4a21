"""What the step-operator tests share: a team stack with a step operator, and a pipeline for it.

The stack is the team's (MariaDB, an S3 bucket on moto) with the local
orchestrator and a step operator ``gpu``; the pipeline prepares data here,
trains through the operator and evaluates here again, so a test sees the
handoff both ways. The job's command runs in tests/job_sandbox.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Result
from services import DB_CANARY, S3_CANARY, Database
from team import bucket_options, register_team_stack

from notebooks import write_notebook
from stackmagic.stores.artifacts import ArtifactStore

OPERATOR = "gpu"
#: the stores' secret options, as the cloud's secret store (or a Kubernetes secret) keeps them
STORE_SECRETS = {
    "STACKMAGIC_METADATA_STORE_PASSWORD": DB_CANARY,
    "STACKMAGIC_ARTIFACT_STORE_SECRET_ACCESS_KEY": S3_CANARY,
}
#: mean(arange(1000) * 2.0): what `evaluate` reports when `train` got `prepare`'s features
EXPECTED_WEIGHTS = 999.0


def register_operator_stack(
    terminal: Callable[..., Result],
    database: Database,
    request: pytest.FixtureRequest,
    operator_flags: list[str],
) -> ArtifactStore:
    """Stack ``team`` (active): MariaDB, a new S3 bucket, the local orchestrator and step
    operator ``gpu`` registered with ``operator_flags``; returns the bucket's store."""
    _, bucket_flags, store = bucket_options("s3", request)
    register_team_stack(terminal, database, bucket_flags)
    for words in (
        ["step-operator", "register", OPERATOR, *operator_flags],
        ["stack", "update", "team", "-s", OPERATOR],
    ):
        result = terminal(*words)
        assert result.code == 0, result.err
    return store


def operator_notebook(folder: Path, train_flags: str = "", *more_steps: str) -> Path:
    """prepare (here) -> train (on the operator, with ``train_flags``) -> evaluate (here)."""
    return write_notebook(
        folder / "operated.ipynb",
        "import numpy as np\nimport stackmagic",
        "%%step prepare\nfeatures = np.arange(1000.0) * scale",
        f"%%step train --operator {OPERATOR} {train_flags}\n"
        "print('training on', len(features), 'rows')\n"
        "weights = features.mean()\nstackmagic.log_metric('mean', weights)",
        "%%step evaluate\nsummary = {'weights': float(weights), 'scale': scale}",
        *more_steps,
        parameters="scale = 2.0",
    )


def described(terminal: Callable[..., Result], run: str = "latest") -> dict[str, Any]:
    result = terminal("pipeline", "describe", run, "--json")
    assert result.code == 0, result.err
    answer: dict[str, Any] = json.loads(result.out)
    return answer


def step_of(run: dict[str, Any], name: str) -> dict[str, Any]:
    step: dict[str, Any] = next(s for s in run["steps"] if s["name"] == name)
    return step


def evaluated_summary(
    terminal: Callable[..., Result], store: ArtifactStore, run: str = "latest"
) -> Any:
    """What `evaluate` computed from the operator step's output, read from the bucket."""
    loaded = terminal("pipeline", "load", run, "evaluate.summary", "--json")
    assert loaded.code == 0, loaded.err
    return store.load(json.loads(loaded.out)["summary"]["uri"])
