"""The README's "Step operators" section, walked: its train cell in the README's train.ipynb,
on the team stack (MariaDB, the S3 emulator), with each flavor's block run against that
backend's stand-in: moto with SageMaker's training jobs (tests/moto_sagemaker.py) and the
FAKE Kubernetes, Vertex AI and Azure ML endpoints (tests/fake_*.py), whose jobs run in
tests/job_sandbox.py. Other programs' commands (``aws``, ``kubectl``, ...) are stood in
for by the same calls through the SDKs, on the stand-ins.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import job_sandbox
import nbformat
import pytest
from fake_azureml import RUNNER, TENANT, FakeAzure
from fake_gce import FakeGce
from fake_http import requests_text, serve
from fake_kubernetes import FakeKubernetes
from fake_vertex import FakeVertex
from moto_sagemaker import MotoSageMaker, moto_sagemaker  # noqa: F401 - its fixture
from readme import Command, Walk, blocks, commands
from test_operator_azureml import azure  # noqa: F401 - its fixture
from test_operator_kubernetes import cluster, kubeconfig_of  # noqa: F401 - its fixture
from test_readme import (  # noqa: F401 - team_servers is a fixture
    MYSQL_PASSWORD,
    describe,
    team_servers,
    walk_of,
    write_readme_notebook,
)
from vm_sandbox import gce  # noqa: F401 - its fixture: Google credentials for a fake

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


@pytest.mark.kernel
def test_vertex(
    project: Path,
    team_servers: dict[str, str],
    gce: FakeGce,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Vertex AI is tests/fake_vertex.py, whose token endpoint gives the test's service account
    (the ``gce`` fixture's key) its tokens; the jobs run as the README's --service-account."""
    key_file = Path(os.environ["GOOGLE_APPLICATION_CREDENTIALS"])
    vertex = FakeVertex("my-project", "europe-west4", tmp_path / "vertex-jobs", key_file)
    vertex.secret_readers.add("trainer@my-project.iam.gserviceaccount.com")

    def gcloud_secrets_create(command: Command) -> None:
        """Stands in for `gcloud secrets create NAME --data-file=- <<< JSON`, on the fake."""
        data = command.words[command.words.index("<<<") + 1]
        vertex.secrets[f"projects/my-project/secrets/{command.words[3]}"] = as_typed(data)

    with contextlib.contextmanager(serve)(vertex):
        submitter = tmp_path / "submitter.json"
        submitter.write_text(
            json.dumps({**json.loads(key_file.read_text()), "token_uri": f"{vertex.url}/token"})
        )
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(submitter))
        endpoints = tuple(
            f"--{api}-endpoint={vertex.url}" for api in ("api", "logging", "secret-manager")
        )
        walk = operated_walk(
            project,
            team_servers,
            {"--region=europe-west4": ("--region=europe-west4", *endpoints, QUICKLY)},
            {"gcloud": gcloud_secrets_create},
            monkeypatch,
        )
        try:
            walk.run_all(flavor_commands("vertex"))
        finally:
            for job in vertex.jobs.values():
                if job.sandbox is not None:
                    job.sandbox.stop()
    walk.assert_no_stale_substitution()
    train = trained_by_job(walk)
    [job] = [json.loads(r.body) for r in vertex.requests if "/customJobs?" in r.path]
    [pool] = job["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"]["acceleratorCount"] == 1, "--gpu 1"
    assert job["jobSpec"]["scheduling"]["strategy"] in ("SPOT", 4), "Scheduling.Strategy.SPOT"
    assert list(vertex.jobs) == [train["job_id"].rsplit("/", 1)[-1]]
    assert MYSQL_PASSWORD not in requests_text(vertex.requests) + "".join(walk.said)


@pytest.mark.kernel
def test_azureml(
    project: Path,
    team_servers: dict[str, str],
    azure: FakeAzure,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Azure ML, Entra ID and Key Vault are tests/fake_azureml.py; the README registers no
    service principal, so the Azure chain finds one in the environment, as on a laptop."""
    for variable, value in (
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", RUNNER),
        ("AZURE_CLIENT_SECRET", azure.principals[RUNNER]),
    ):
        monkeypatch.setenv(variable, value)

    def az_keyvault_secret_set(command: Command) -> None:
        """Stands in for `az keyvault secret set --vault-name V --name N --value JSON`."""
        words = command.words
        azure.secrets[words[words.index("--name") + 1]] = as_typed(
            words[words.index("--value") + 1]
        )

    walk = operated_walk(
        project,
        team_servers,
        {
            "--key-vault-url=https://team-vault.vault.azure.net": (
                f"--key-vault-url={azure.url}",
                f"--resource-manager-url={azure.url}",
                f"--authority-host={azure.url}",
                QUICKLY,
            )
        },
        {"az": az_keyvault_secret_set},
        monkeypatch,
    )
    walk.run_all(flavor_commands("azureml"))
    walk.assert_no_stale_substitution()
    train = trained_by_job(walk)
    [job] = [body["properties"] for body in azure.sent_jobs()]
    assert job["resources"]["instanceType"].startswith("Standard_NC"), "--gpu 1: a GPU size"
    assert train["job_id"] in train["job_url"]
    assert MYSQL_PASSWORD not in requests_text(azure.requests) + "".join(walk.said)
