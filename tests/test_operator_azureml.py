"""The Azure ML step operator: the real azure-ai-ml, azure-identity and azure-keyvault-secrets
against a FAKE Azure.

tests/fake_azureml.py plays Azure Resource Manager's workspace and jobs, the
region's run history, Microsoft Entra ID and Key Vault, over TLS, as strict as
they are on what they are sent; a job's command runs on this machine
(tests/job_sandbox.py) as the job's managed identity. The stores are real:
MariaDB and an S3 bucket on moto.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, started_run, wait_for
from fake_azureml import (
    JOB_IDENTITY,
    RESOURCE_GROUP,
    RUNNER,
    SUBSCRIPTION,
    TENANT,
    WORKSPACE,
    WORKSPACE_PATH,
    FakeAzure,
    job_refusal,
    tls_certificate,
)
from fake_http import requests_text, serve
from operator_pipeline import (
    EXPECTED_WEIGHTS,
    STORE_SECRETS,
    described,
    evaluated_summary,
    operator_notebook,
    register_operator_stack,
    step_of,
)
from services import DB_CANARY, S3_CANARY, Database

from notebooks import write_notebook
from stackmagic.errors import StackmagicError
from stackmagic.flavors.step_operators import AzureMLStepOperator
from stackmagic.operators.azureml import SIGN_IN_ADVICE, AzureML
from stackmagic.operators.base import (
    FAILED,
    PENDING,
    RUNNING,
    STOPPED,
    SUCCEEDED,
    OperatorJob,
    Resources,
)
from stackmagic.stores.artifacts import ArtifactStore

#: the service principal's client secret: a secret option, for signing in here only
CLIENT_SECRET = "CANARY-azure-client-secret-5d1e"
IMAGE = "teamacr.azurecr.io/train:1"
SECRET = "team-stores"


@pytest.fixture
def azure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAzure]:
    """The FAKE Azure over TLS (its certificate trusted here and in the jobs); the submitter's
    service principal, the jobs' identity, and the stores' secrets in its Key Vault."""
    cert, key = tls_certificate(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    fake = FakeAzure(sandboxes=tmp_path / "azureml-jobs", certificate=cert)
    fake.principals = {RUNNER: CLIENT_SECRET, JOB_IDENTITY: "job-identity-secret"}
    fake.secrets[SECRET] = json.dumps(STORE_SECRETS)
    with contextlib.contextmanager(serve)(fake, (cert, key)):
        try:
            yield fake
        finally:
            for job in fake.jobs.values():
                if job.sandbox is not None:
                    job.sandbox.stop()


def flags(fake: FakeAzure, *more: str) -> list[str]:
    """The operator's options, as `stackmagic step-operator register gpu` takes them."""
    return [
        "--type=azureml",
        f"--subscription-id={SUBSCRIPTION}",
        f"--resource-group={RESOURCE_GROUP}",
        f"--workspace-name={WORKSPACE}",
        f"--tenant-id={TENANT}",
        f"--client-id={RUNNER}",
        f"--client-secret={CLIENT_SECRET}",
        f"--resource-manager-url={fake.url}",
        f"--authority-host={fake.url}",
        f"--key-vault-url={fake.url}",
        f"--store-secret={SECRET}",
        f"--image={IMAGE}",
        "--poll-seconds=0.2",
        *more,
    ]


def backend(fake: FakeAzure, *more: str, client_secret: str = CLIENT_SECRET) -> AzureML:
    """The backend, with the options `flags` gives (the secret resolved as a stack would)."""
    options = dict(flag.removeprefix("--").split("=", 1) for flag in flags(fake, *more))
    del options["type"], options["client-secret"]
    config = AzureMLStepOperator.from_options(
        {key.replace("-", "_"): value for key, value in options.items()}, Path.cwd()
    )
    assert isinstance(config, AzureMLStepOperator)
    config.client_secret = "env:AZURE_CLIENT_SECRET"  # a reference, as the registry keeps it
    return AzureML("gpu", config, {"client_secret": client_secret}.__getitem__)


def a_job(attempt: int = 1) -> OperatorJob:
    return OperatorJob("r20260101-abc", "train", attempt, False, {}, "azureml")


def resources(image: str = IMAGE, **asked: Any) -> Resources:
    return Resources.from_settings(asked, image)


def submitted(
    operator: AzureML, script: str, image: str = IMAGE, attempt: int = 1
) -> tuple[str, str]:
    """A job whose command is ``python -c script`` (the request otherwise the step's)."""
    request = operator.request(a_job(attempt), resources(image))
    request["command"] = shlex.join(["python", "-c", script])
    return operator.submit(a_job(attempt), request)


def followed(operator: AzureML, job_id: str) -> tuple[str, list[str], list[str]]:
    """The job followed to its end as the driver does: its reason, the phases seen, its log."""
    lines: list[str] = []
    phases: list[str] = []
    cursor = None
    for _ in range(300):
        state = operator.state(job_id)
        new, cursor = operator.logs(job_id, cursor)
        lines += new
        phases.append(state.phase)
        if state.phase in (SUCCEEDED, FAILED, STOPPED):
            return state.reason, phases, lines
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end")


def sent_but_tokens(fake: FakeAzure) -> str:
    """Every request but the submitter's sign-in (which is where its client secret goes)."""
    return requests_text([r for r in fake.requests if not r.path.endswith("/oauth2/v2.0/token")])


def test_the_command_job_has_the_steps_image_command_vm_size_spot_limits_and_tags(
    azure: FakeAzure,
) -> None:
    operator = backend(azure, "--spot=true", "--experiment=churn")
    request = operator.request(a_job(), resources(cpu="4", memory="16G"))
    assert request == {
        "name": a_job().name(),
        "display_name": a_job().name(),
        "description": "step train of stackmagic run r20260101-abc, try 1",
        "experiment_name": "churn",
        "command": " ".join(a_job().command()),
        "environment": {"image": IMAGE},
        "identity": "managed",
        "environment_variables": {"PYTHONUNBUFFERED": "1"},
        "tags": {
            "stackmagic-run": "r20260101-abc",
            "stackmagic-step": "train",
            "stackmagic-try": "1",
        },
        "timeout": 86400,
        "instance_type": "Standard_D4s_v3",
        "queue_settings": {"job_tier": "Spot"},
    }
    assert operator.secret_location() == {"name": SECRET, "vault_url": azure.url}
    gpu = operator.request(a_job(), resources(cpu="8", gpu=1))
    assert gpu["instance_type"] == "Standard_NC8as_T4_v3", "the cheapest with a GPU that fits"
    cluster = backend(azure, "--compute-target=gpu-cluster").request(a_job(), resources())
    assert cluster["compute"] == "gpu-cluster"
    assert "instance_type" not in cluster and "queue_settings" not in cluster
    assert azure.requests == [], "a request asks Azure nothing"


def test_a_vm_size_too_small_and_serverless_options_on_a_cluster_are_refused(
    azure: FakeAzure,
) -> None:
    with pytest.raises(StackmagicError) as refused:
        backend(azure, "--instance-type=Standard_DS3_v2").request(
            a_job(), resources(cpu="8", memory="60G")
        )
    assert str(refused.value) == (
        "step 'train' asks for --cpu 8 --memory 60G, more than --instance-type=Standard_DS3_v2 "
        "has (4 CPUs, 14 GiB, 0 GPUs); types that fit: Standard_E8s_v3, Standard_D16s_v3, "
        "Standard_E16s_v3, Standard_D32s_v3, Standard_E32s_v3, Standard_D64s_v3, "
        "Standard_E64s_v3 (give one with --instance-type)"
    )
    with pytest.raises(StackmagicError, match="--spot and --instance-type are for serverless"):
        backend(azure, "--compute-target=gpu-cluster", "--spot=true").check(resources())


def test_a_job_runs_as_its_managed_identity_which_reads_the_secret_and_its_log_comes_once(
    azure: FakeAzure,
) -> None:
    operator = backend(azure, "--spot=true")
    location = json.dumps(operator.secret_location())
    job_id, url = submitted(
        operator,
        "import json\nfrom stackmagic.operators.azureml import AzureML\n"
        f"secrets = json.loads(AzureML.read_secret({location}))\n"
        "print('read', *sorted(secrets))\n"
        "import time\n"
        "for n in range(500): print('line', n) or n % 100 or time.sleep(0.3)",
    )
    assert job_id == a_job().name()
    assert url == (
        f"https://ml.azure.com/runs/{job_id}?wsid=/subscriptions/{SUBSCRIPTION}"
        f"/resourcegroups/{RESOURCE_GROUP}/workspaces/{WORKSPACE}"
    )
    reason, phases, lines = followed(operator, job_id)
    assert (phases[0], phases[-1], reason) == (PENDING, SUCCEEDED, ""), lines
    assert lines[0] == f"read {' '.join(sorted(STORE_SECRETS))}"
    assert lines[1:] == [f"line {n}" for n in range(500)], "every line once, in order"
    [body] = azure.sent_jobs()
    properties = body["properties"]
    assert properties["jobType"] == "Command"
    assert properties["resources"]["instanceType"] == "Standard_D2s_v3"
    assert properties["queueSettings"] == {"jobTier": "Spot"}
    assert properties["limits"] == {"jobLimitsType": "Command", "timeout": "P1D"}
    assert properties["identity"] == {"identityType": "Managed"}
    assert properties["experimentName"] == "stackmagic"
    assert azure.environments[properties["environmentId"]]["properties"]["image"] == IMAGE
    said = sent_but_tokens(azure) + "\n".join(lines)
    for canary in (CLIENT_SECRET, DB_CANARY, S3_CANARY):
        assert canary not in said, "secrets only in the job's own answer from Key Vault"


def test_an_identity_the_vault_does_not_trust_is_refused_the_secret_in_one_line(
    azure: FakeAzure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The submitter's service principal, say, as the job's identity: no access to secrets."""
    for name, value in {
        "AZURE_CLIENT_ID": RUNNER,
        "AZURE_TENANT_ID": TENANT,
        "AZURE_CLIENT_SECRET": CLIENT_SECRET,
        "AZURE_AUTHORITY_HOST": azure.url,
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(StackmagicError) as refused:
        AzureML.read_secret(backend(azure).secret_location())
    assert str(refused.value) == (
        f"cannot read the secret 'team-stores' from {azure.url}: AuthorizationFailed: The client "
        f"'{RUNNER}' may not use /secrets/team-stores/; check that the job's managed identity may "
        "get secrets of that Key Vault"
    )


@pytest.mark.parametrize(
    "change, refusal",
    [
        ({"command": " "}, "A command job needs a non-empty command."),
        ({"environmentId": "nope"}, "Environment 'nope' was not found in the workspace."),
        ({"resources": {}}, "Serverless compute needs resources.instanceType"),
        (
            {"computeId": f"{WORKSPACE_PATH}/computes/gpu", "queueSettings": {"jobTier": "Spot"}},
            "The Spot job tier is for serverless compute only.",
        ),
        ({"limits": {"jobLimitsType": "Command", "timeout": 3600}}, "limits must be Command"),
        ({"tags": {"stackmagic-try": 1}}, "tags must map names to strings."),
    ],
)
def test_the_fake_refuses_a_job_azure_ml_would_refuse(change: dict[str, Any], refusal: str) -> None:
    environment = f"{WORKSPACE_PATH}/environments/CliV2AnonymousEnvironment/versions/1"
    good = {
        "jobType": "Command",
        "command": "python -m stackmagic.runtime job e30=",
        "environmentId": environment,
        "resources": {"instanceType": "Standard_D4s_v3"},
        "limits": {"jobLimitsType": "Command", "timeout": "PT1H"},
    }
    assert job_refusal(good, {environment: {}}, {"gpu"}) is None
    assert str(job_refusal({**good, **change}, {environment: {}}, {"gpu"})).startswith(refusal)


def test_a_job_whose_image_cannot_be_pulled_fails_with_azure_mls_reason(azure: FakeAzure) -> None:
    azure.unpullable.add("teamacr.azurecr.io/missing:1")
    operator = backend(azure)
    job_id, _ = submitted(operator, "print('never')", image="teamacr.azurecr.io/missing:1")
    reason, phases, lines = followed(operator, job_id)
    assert phases == [PENDING, FAILED] and lines == []
    assert reason.startswith("UserError: Failed to pull Docker image teamacr.azurecr.io/missing:1")
    assert not operator.state(job_id).interrupted


def test_a_preempted_spot_job_is_interrupted_and_a_cancelled_one_stopped(azure: FakeAzure) -> None:
    operator = backend(azure, "--spot=true")
    preempted, _ = submitted(operator, "import time; time.sleep(60)")
    azure.preempt(preempted)
    reason, _, _ = followed(operator, preempted)
    assert operator.state(preempted).interrupted and "PreemptionError" in reason

    operator = backend(azure)
    job_id, _ = submitted(operator, "import time; print('started'); time.sleep(60)", attempt=2)
    wait_for(lambda: operator.state(job_id).phase == RUNNING, timeout=20, what="the job running")
    operator.stop(job_id)
    reason, phases, lines = followed(operator, job_id)
    assert (phases[-1], reason) == (STOPPED, "Canceled") and lines == ["started"]
    sandbox = azure.jobs[job_id].sandbox
    assert azure.cancelled == [job_id] and sandbox is not None and sandbox.exit_code is not None
    operator.stop(job_id)  # ended already: left as it is


def test_azures_refusals_are_one_line_naming_the_job(azure: FakeAzure) -> None:
    wrong = backend(azure, client_secret="not-the-secret")
    with pytest.raises(StackmagicError) as refused:
        wrong.submit(a_job(), wrong.request(a_job(), resources()))
    assert str(refused.value).startswith(f"cannot submit the Azure ML job {a_job().name()}: ")
    assert "Authentication failed: AADSTS7000215: Invalid client secret provided" in str(
        refused.value
    )
    assert str(refused.value).endswith(SIGN_IN_ADVICE)

    cluster = backend(azure, "--compute-target=gone")
    with pytest.raises(StackmagicError) as refused:
        cluster.submit(a_job(), cluster.request(a_job(), resources()))
    assert str(refused.value).startswith(
        f"cannot submit the Azure ML job {a_job().name()}: UserError: Compute "
        f"{WORKSPACE_PATH}/computes/gone was not found in the workspace"
    )
    assert CLIENT_SECRET not in sent_but_tokens(azure)


# --- a pipeline whose train step runs as an Azure ML job -----------------------------------


@pytest.fixture
def azureml_stack(
    azure: FakeAzure,
    terminal: Callable[..., Result],
    team_database: Database,
    request: pytest.FixtureRequest,
) -> ArtifactStore:
    """The team stack with step operator ``gpu``: Azure ML (the fake), serverless Spot jobs;
    its bucket's store."""
    return register_operator_stack(terminal, team_database, request, flags(azure, "--spot=true"))


def jobs_of(azure: FakeAzure, run_id: str) -> list[dict[str, Any]]:
    """The properties of a run's jobs as Azure ML was asked to create them, first try first."""
    return [
        body["properties"]
        for body in azure.sent_jobs()
        if body["properties"]["tags"].get("stackmagic-run") == run_id
    ]


def studio(name: str) -> str:
    return (
        f"https://ml.azure.com/runs/{name}?wsid=/subscriptions/{SUBSCRIPTION}"
        f"/resourcegroups/{RESOURCE_GROUP}/workspaces/{WORKSPACE}"
    )


def test_a_step_runs_as_an_azure_ml_job_and_a_preempted_spot_job_is_tried_again(
    azure: FakeAzure,
    azureml_stack: ArtifactStore,
    project: Path,
    terminal: Callable[..., Result],
) -> None:
    operator_notebook(project, "--cpu 4 --memory 16G --retries 1")
    dry = terminal("pipeline", "run", "operated.ipynb", "--dry-run")
    assert dry.code == 0 and "Standard_D4s_v3" in dry.out, dry.out + dry.err
    azure.preempt_next = 1  # the first try's Spot VM is taken back

    ran = terminal("pipeline", "run", "operated.ipynb")

    assert ran.code == 0, ran.out + ran.err
    assert evaluated_summary(terminal, azureml_stack) == {"weights": EXPECTED_WEIGHTS, "scale": 2.0}
    run = described(terminal)
    assert [(step["name"], step["status"]) for step in run["steps"]] == [
        ("prepare", "completed"),
        ("train", "completed"),
        ("evaluate", "completed"),
    ]
    first, second = jobs_of(azure, run["id"])
    assert (first["displayName"], second["displayName"]) == (
        f"sm-train-{run['id']}-try1",
        f"sm-train-{run['id']}-try2",
    )
    assert second["resources"]["instanceType"] == "Standard_D4s_v3"
    assert second["queueSettings"] == {"jobTier": "Spot"}
    assert second["command"].startswith("python -m stackmagic.runtime job ")
    train = step_of(run, "train")
    assert (train["job_id"], train["job_url"]) == (
        second["displayName"],
        studio(second["displayName"]),
    )
    said = ran.out + ran.err
    assert f"azureml job {first['displayName']} interrupted: ServiceError: " in said
    assert "train | training on 1000 rows" in said, "the job's log, in the run's progress"
    assert "experimental" not in said, "the SDK's news for its developers is not shown"
    recorded = json.dumps(run) + dry.out + said + sent_but_tokens(azure)
    kept = [path for folder in (project, azure.sandboxes) for path in folder.rglob("*")]
    recorded += "".join(path.read_text(errors="replace") for path in kept if path.is_file())
    for canary in (CLIENT_SECRET, DB_CANARY, S3_CANARY):
        assert canary not in recorded, "secrets by reference only"


@pytest.mark.usefixtures("azureml_stack")
def test_a_job_that_fails_before_its_step_runs_fails_the_step_with_azure_mls_reason(
    azure: FakeAzure, project: Path, terminal: Callable[..., Result]
) -> None:
    operator_notebook(project, "--cpu 4 --memory 16G")
    azure.unpullable.add(IMAGE)

    ran = terminal("pipeline", "run", "operated.ipynb")

    assert ran.code != 0
    run = described(terminal)
    [job] = jobs_of(azure, run["id"])
    name = job["displayName"]
    error = (
        f"azureml job {name} failed: UserError: Failed to pull Docker image {IMAGE}: "
        f"unauthorized ({studio(name)})"
    )
    assert step_of(run, "train")["status"] == "failed"
    assert step_of(run, "train")["error"] == error
    assert step_of(run, "evaluate")["status"] == "skipped"
    assert error in ran.err


@pytest.mark.usefixtures("azureml_stack")
def test_a_cancelled_run_cancels_its_azure_ml_job(
    azure: FakeAzure, project: Path, terminal: Callable[..., Result]
) -> None:
    notebook = write_notebook(
        project / "slow.ipynb",
        "%%step train --operator gpu\nimport time\nprint('waiting', flush=True)\n"
        "trained = time.sleep(120)",
        "%%step report\nprint(trained)",
    )
    with started_run(notebook) as driver:
        name, job = wait_for(
            lambda: next(
                (
                    (n, j)
                    for n, j in azure.jobs.items()
                    if j.sandbox and "waiting" in j.sandbox.lines
                ),
                None,
            ),
            timeout=40,
            what="the step running in its job",
        )
        run_id = json.loads(terminal("pipeline", "runs", "--json").out)[0]["id"]

        cancelled = terminal("pipeline", "cancel", run_id)

        assert cancelled.code == 0, cancelled.err
        assert driver.wait(timeout=30) == 1
    assert azure.cancelled == [name], "the job's cancel was asked"
    assert job.status() == "Canceled" and job.sandbox.exit_code is not None
    run = described(terminal, run_id)
    assert [(step["name"], step["status"]) for step in run["steps"]] == [
        ("train", "cancelled"),
        ("report", "skipped"),
    ]
    assert run["status"] == "cancelled"
