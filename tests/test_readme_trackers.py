"""The README's "Experiment trackers" section, walked on its team stack (MariaDB, the S3
emulator) against a real MLflow server (tests/mlflow_server.py) standing for its
mlflow.internal; the W&B lines register as written. Then the section's line for a tracker
out of reach, as a run with one really prints it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlflow_server import QUIET, MLflowServer, mlflow_server  # noqa: F401 - a fixture
from readme import Command, blocks, commands
from services import free_port
from test_readme import (  # noqa: F401 - team_servers is a fixture
    runnable,
    team_servers,
    walk_of,
    write_readme_notebook,
)

SECTION = "Experiment trackers: every run in MLflow or W&B"
README_HOST = "http://mlflow.internal:5000"
TOKEN = "CANARY-mlflow-token-5d1e"


@pytest.mark.kernel
def test_experiment_trackers(
    project: Path,
    team_servers: dict[str, str],  # noqa: F811 - the fixture imported above
    mlflow_server: MLflowServer,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow.tracking import MlflowClient

    for variable, value in {**QUIET, "MLFLOW_TOKEN": TOKEN, "WANDB_API_KEY": "unused"}.items():
        monkeypatch.setenv(variable, value)
    write_readme_notebook(project)
    walk = walk_of(
        project,
        substitutions={
            **team_servers,
            f"--tracking-uri={README_HOST}": f"--tracking-uri={mlflow_server.url}",
        },
    )
    walk.run(Command(("stackmagic", "init")))
    [team, *_] = blocks("Team stacks: a shared database and a bucket", "bash")
    walk.run_all(c for c in commands(team.text) if c.words[:2] != ("stackmagic", "pipeline"))
    walk.run_all(runnable(SECTION))
    walk.assert_no_stale_substitution()

    described = walk.said_by("stackmagic pipeline describe")  # as the README comment shows it
    [shown] = re.findall(r"^\s*tracker\s+(\S+)$", described, re.MULTILINE)
    assert shown.startswith(f"{mlflow_server.url}/#/experiments/"), described
    run_id = re.search(r"^Run (\S+):", described, re.MULTILINE)
    assert run_id is not None
    client = MlflowClient(mlflow_server.url)
    [parent] = client.search_runs(
        [client.get_experiment_by_name("train").experiment_id],
        f"tags.`stackmagic.run_id` = '{run_id.group(1)}' and tags.`mlflow.parentRunId` IS NULL",
    )
    assert shown.endswith(parent.info.run_id)
    assert parent.data.params["lr"] == "0.05", "the README's -p lr 0.05"
    assert parent.data.tags["stackmagic.stack"] == "team"
    assert all(TOKEN not in said for said in walk.said)

    # the section's line for a tracker out of reach, with this run's id and address
    [line] = blocks(SECTION, "text")
    closed = f"http://127.0.0.1:{free_port()}"
    walk.run(
        Command(("stackmagic", "experiment-tracker", "update", "mlf", f"--tracking-uri={closed}"))
    )
    walk.run(Command(("stackmagic", "pipeline", "run", "train.ipynb", "--no-cache")))
    printed = [said for said in walk.said[-1].splitlines() if said.startswith("stackmagic: run")]
    shape = re.escape(line.text.strip())
    shape = shape.replace(re.escape("20261130-101500-3fa9c1"), r"\d{8}-\d{6}-[0-9a-f]{6}")
    shape = shape.replace(re.escape(README_HOST), re.escape(closed))
    assert len(printed) == 1 and re.fullmatch(shape, printed[0]), (printed, line.text)
