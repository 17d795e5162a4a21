"""The README's "Step operators" section, walked: its train cell in the README's train.ipynb,
on the team stack (MariaDB, the S3 emulator), with each flavor's block run against that
backend's stand-in: moto with SageMaker's training jobs (tests/moto_sagemaker.py) and the
FAKE Kubernetes, Vertex AI and Azure ML endpoints (tests/fake_*.py), whose jobs run in
tests/job_sandbox.py. Other programs' commands (``aws``, ``kubectl``, ...) are stood in
for by the same calls through the SDKs, on the stand-ins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import job_sandbox
import nbformat
import pytest
from fake_kubernetes import FakeKubernetes
from moto_sagemaker import MotoSageMaker, moto_sagemaker  # noqa: F401 - its fixture
from readme import Command, Walk, blocks, commands
from test_operator_kubernetes import cluster, kubeconfig_of  # noqa: F401 - its fixture
from test_readme import (  # noqa: F401 - team_servers is a fixture
    MYSQL_PASSWORD,
    describe,
    team_servers,
    walk_of,
    write_readme_notebook,
)

SECTION = "Step operators: one step on a GPU job"
#: the stand-ins are looked at often, so a walk takes seconds, not the README's 10 s a look
QUICKLY = "--poll-seconds=0.2"


def flavor_commands(flavor: str) -> list[Command]:
    """The commands of the section's block for ``flavor``."""
    [block] = [b for b in blocks(SECTION, "bash") if f"--type={flavor}" in b.text]
    return commands(block.text)


def as_typed(secret_json: str) -> str:
    """The README's secret JSON with the password a user types for its ``...``."""
    return secret_json.replace('"..."', json.dumps(MYSQL_PASSWORD))


def operated_walk(
    project: Path,
    team_servers: dict[str, str],
    substitutions: dict[str, str | tuple[str, ...]],
    stand_ins: dict[str, Callable[[Command], None]],
    monkeypatch: pytest.MonkeyPatch,
) -> Walk:
    """The README's team stack (registered, not run) and train.ipynb, its train step the
    section's cell."""
    write_readme_notebook(project)
    walk = walk_of(project, substitutions={**team_servers, **substitutions}, stand_ins=stand_ins)
    walk.run(Command(("stackmagic", "init")))
    [team, *_] = blocks("Team stacks: a shared database and a bucket", "bash")
    walk.run_all(c for c in commands(team.text) if c.words[:2] != ("stackmagic", "pipeline"))
    notebook = nbformat.read(project / "train.ipynb", as_version=4)
    [operated] = blocks(SECTION, "python")
    [train] = [cell for cell in notebook.cells if cell.source.startswith("%%step train")]
    train.source = operated.text.rstrip("\n")
    nbformat.write(notebook, project / "train.ipynb")
    # the job's identity reaches the bucket (the S3 emulator) as the README's credential chain
    identity = {key: value for key, value in os.environ.items() if key.startswith("AWS_")}
    monkeypatch.setattr(job_sandbox, "JOB_IDENTITY", identity)
    return walk


def trained_by_job(walk: Walk) -> dict[str, Any]:
    """The last run, which completed with its train step run by a job and its loss logged."""
    run = describe(walk)
    assert (run["stack"], run["status"]) == ("team", "completed"), run
    steps = {step["name"]: step for step in run["steps"]}
    assert [step["status"] for step in steps.values()] == ["completed", "completed"]
    assert steps["train"]["job_id"] and steps["train"]["job_url"] and not steps["load"]["job_id"]
    assert [metric["name"] for metric in steps["train"]["metrics"]] == ["loss"]
    return steps["train"]


@pytest.mark.kernel
def test_sagemaker(
    project: Path,
    team_servers: dict[str, str],
    moto_sagemaker: MotoSageMaker,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def aws_create_secret(command: Command) -> None:
        """Stands in for `aws secretsmanager create-secret`: the same call through boto3."""
        words = command.words
        moto_sagemaker.client("secretsmanager").create_secret(
            Name=words[words.index("--name") + 1],
            SecretString=as_typed(words[words.index("--secret-string") + 1]),
        )

    walk = operated_walk(
        project,
        team_servers,
        {"--spot=true": ("--spot=true", f"--endpoint-url={moto_sagemaker.url}", QUICKLY)},
        {"aws": aws_create_secret},
        monkeypatch,
    )
    walk.run_all(flavor_commands("sagemaker"))
    walk.assert_no_stale_substitution()
    shown = walk.said_by("stackmagic pipeline describe latest")
    train = trained_by_job(walk)
    [request] = moto_sagemaker.requests_of(describe(walk)["id"])
    assert request["ResourceConfig"]["InstanceType"] == "ml.g4dn.2xlarge", "--gpu 1 --memory 32G"
    assert request["EnableManagedSpotTraining"] is True
    assert train["job_id"] == request["TrainingJobName"]
    assert '"TrainingJobName"' in walk.said_by("stackmagic pipeline run train.ipynb --dry-run")
    assert f"job {train['job_id']}: {train['job_url']}" in shown
    assert MYSQL_PASSWORD not in moto_sagemaker.sent() + "".join(walk.said)


@pytest.mark.kernel
def test_kubernetes(
    project: Path,
    team_servers: dict[str, str],
    cluster: FakeKubernetes,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    def kubectl_create_secret(command: Command) -> None:
        """Stands in for `kubectl create secret generic NAME --from-literal=KEY=VALUE`."""
        from kubernetes import client
        from kubernetes.config import new_client_from_config

        words = command.words
        literals = [w.split("=", 1)[1] for w in words if w.startswith("--from-literal=")]
        api = client.CoreV1Api(new_client_from_config(str(kubeconfig)))
        api.create_namespaced_secret(
            next(w.split("=", 1)[1] for w in words if w.startswith("--namespace=")),
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=words[4]),
                string_data={
                    key: MYSQL_PASSWORD if value == "..." else value
                    for key, value in (literal.split("=", 1) for literal in literals)
                },
            ),
        )

    kubeconfig = kubeconfig_of(cluster, tmp_path)
    walk = operated_walk(
        project,
        team_servers,
        {"--namespace=ml": ("--namespace=ml", f"--kubeconfig={kubeconfig}", QUICKLY)},
        {"kubectl": kubectl_create_secret},
        monkeypatch,
    )
    walk.run_all(flavor_commands("kubernetes"))
    walk.assert_no_stale_substitution()
    train = trained_by_job(walk)
    [pod] = cluster.pods.values()
    assert train["job_id"] == f"ml/{pod.job}"
    assert MYSQL_PASSWORD not in "".join(walk.said)
