"""The kubernetes step operator: a step as a Job, its manifest, state, log, stop, and runs.

Real: the ``kubernetes`` client, reaching the cluster through a kubeconfig
file with a token, as a user's does; MariaDB and the S3 emulator for the
team's stores. FAKE: the Kubernetes API server (tests/fake_kubernetes.py), as
strict as a real one on the Jobs it is sent, whose stand-in kubelet runs a
pod's container command in a sandbox (tests/job_sandbox.py) with the Secret
its ``envFrom`` names as environment.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, started_run, wait_for
from fake_http import requests_text
from fake_kubernetes import TOKEN, FakeKubernetes
from kubernetes_cluster import NAMESPACE, STORE_SECRET, kubeconfig_of, running_cluster
from operator_pipeline import (
    EXPECTED_WEIGHTS,
    described,
    evaluated_summary,
    operator_notebook,
    register_operator_stack,
    step_of,
)
from services import DB_CANARY, S3_CANARY, Database
from team import secret_sightings

from notebooks import write_notebook
from stackmagic.errors import StackmagicError
from stackmagic.flavors.step_operators import KubernetesStepOperator
from stackmagic.operators.base import FAILED, PENDING, STOPPED, SUCCEEDED, OperatorJob, Resources
from stackmagic.operators.kubernetes import Kubernetes
from stackmagic.stores.artifacts import ArtifactStore

IMAGE = "stackmagic/train:1"
#: a stack's stores as a job gets them: secrets as references only
STORES = {
    "stack": "team",
    "artifact-store": {"name": "bucket", "flavor": "s3", "options": {"path": "s3://b/runs/"}},
    "metadata-store": {
        "name": "db",
        "flavor": "mysql",
        "options": {"password": "env:STACKMAGIC_METADATA_STORE_PASSWORD"},
    },
}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FakeKubernetes]:
    with running_cluster(tmp_path) as fake:
        yield fake


def backend(fake: FakeKubernetes, folder: Path, **options: str) -> Kubernetes:
    config = KubernetesStepOperator.from_options(
        {
            "kubeconfig": str(kubeconfig_of(fake, folder)),
            "namespace": NAMESPACE,
            "image": IMAGE,
            "store_secret": STORE_SECRET,
            "service_account": "trainer",
            "node_selector": "pool=gpu",
            "tolerations": "gpu=true:NoSchedule,spot:NoExecute",
            "image_pull_secrets": "registry",
            "max_runtime": "600",
            **options,
        },
        Path.cwd(),
    )
    assert isinstance(config, KubernetesStepOperator)
    return Kubernetes("gpu", config, lambda option: pytest.fail(f"no secret option: {option}"))


def a_job(run_id: str, step: str = "train", attempt: int = 1) -> OperatorJob:
    return OperatorJob(run_id, step, attempt, False, STORES, "kubernetes", secret={})


def asking(cpu: str = "", memory: str = "", gpu: int = 0, image: str = "") -> Resources:
    return Resources.from_settings(
        {"cpu": cpu, "memory": memory, "gpu": gpu, "image": image}, IMAGE
    )


def sent(fake: FakeKubernetes) -> str:
    """Every request the fake got but the test's own making of the Secret."""
    return requests_text([r for r in fake.requests if "/secrets" not in r.path])


# --- the Job's manifest --------------------------------------------------------------------


def test_the_job_carries_image_command_resources_pod_options_and_labels_but_no_secret(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    operator = backend(cluster, tmp_path)
    job = a_job("20261130-064508-3fa9c1", step="Train_Model")
    request = operator.request(job, asking("4", "16G", gpu=1), look_up=False)

    labels = {
        "stackmagic-run": "20261130-064508-3fa9c1",
        "stackmagic-step": "Train_Model",
        "stackmagic-try": "1",
    }
    assert request["metadata"] == {
        "name": "sm-train-model-20261130-064508-3fa9c1-try1",
        "namespace": NAMESPACE,
        "labels": labels,
    }
    spec = request["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 600)
    assert spec["ttlSecondsAfterFinished"] == 24 * 3600
    assert spec["template"]["metadata"] == {"labels": labels}
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "trainer"
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["tolerations"] == [
        {"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists", "effect": "NoExecute"},
    ]
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    [container] = pod["containers"]
    assert container["image"] == IMAGE and container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == job.command()
    assert OperatorJob.decode(container["command"][-1]) == job
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "16G"},
        "limits": {"cpu": "4", "memory": "16G", "nvidia.com/gpu": "1"},
    }
    assert container["envFrom"] == [{"secretRef": {"name": STORE_SECRET}}]
    assert operator.secret_location() == {}, "the secret arrives as the pod's environment"

    # the step's own image and a kilo as --memory wrote it; the API server takes the Job
    other = operator.request(job, asking("0.5", "512K", image="team/other:2"))
    [container] = other["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "team/other:2"
    assert container["resources"]["limits"] == {"cpu": "0.5", "memory": "512k"}
    job_id, url = operator.submit(job, request)
    assert job_id == f"{NAMESPACE}/sm-train-model-20261130-064508-3fa9c1-try1"
    assert url == f"{cluster.url}/apis/batch/v1/namespaces/{job_id.replace('/', '/jobs/')}"
    assert DB_CANARY not in sent(cluster) and S3_CANARY not in sent(cluster)
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in cluster.requests)


def test_a_malformed_toleration_is_refused_when_the_operator_is_registered(tmp_path: Path) -> None:
    with pytest.raises(StackmagicError) as refused:
        KubernetesStepOperator.from_options({"tolerations": "gpu=true"}, tmp_path)
    assert str(refused.value) == (
        "--tolerations: 'gpu=true' is not KEY=VALUE:EFFECT or KEY:EFFECT with EFFECT one of "
        "NoSchedule, PreferNoSchedule, NoExecute (gpu=true:NoSchedule, say)"
    )


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda c, p: c["resources"]["limits"].update(memory="16GB"), "quantities must match"),
        (lambda c, p: p.update(restartPolicy="Always"), "restartPolicy: Required value"),
        (lambda c, p: c.update(envfrom=[]), 'unknown field "spec.template.spec.containers'),
        (lambda c, p: c.update(image=""), "containers[0].image: Required value"),
        (lambda c, p: p["tolerations"][1].update(value="x"), "must be empty when `operator`"),
    ],
)
def test_the_fake_api_server_refuses_what_kubernetes_refuses_in_one_line(
    cluster: FakeKubernetes,
    tmp_path: Path,
    change: Callable[[dict[str, Any], dict[str, Any]], Any],
    complaint: str,
) -> None:
    """The FAKE's own strictness (else it would prove nothing), and the backend's one line."""
    operator = backend(cluster, tmp_path)
    request = operator.request(a_job("bad1"), asking("1", "1G"))
    pod = request["spec"]["template"]["spec"]
    change(pod["containers"][0], pod)
    with pytest.raises(StackmagicError) as refused:
        operator.submit(a_job("bad1"), request)
    assert str(refused.value).startswith("cannot create the Kubernetes Job ml/sm-train-bad1-try1:")
    assert complaint in str(refused.value)
    assert not cluster.jobs


def test_a_missing_namespace_no_kubeconfig_and_an_unreachable_cluster_are_one_line(
    cluster: FakeKubernetes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = backend(cluster, tmp_path, namespace="nowhere")
    with pytest.raises(StackmagicError) as refused:
        operator.submit(a_job("ns1"), operator.request(a_job("ns1"), asking()))
    assert str(refused.value) == (
        'cannot create the Kubernetes Job nowhere/sm-train-ns1-try1: 404 namespaces "nowhere" '
        "not found; check --namespace"
    )
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config, and not in a pod
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    lost = backend(cluster, tmp_path, kubeconfig="")
    with pytest.raises(
        StackmagicError,
        match="^cannot use the pod's service account to reach "
        r"Kubernetes \(.+\); give a kubeconfig with --kubeconfig \(and --context\)$",
    ):
        lost.state("ml/sm-train-ns1-try1")

    cluster.url = "http://127.0.0.1:1"  # what the kubeconfig names: nothing listens there
    with pytest.raises(
        StackmagicError,
        match=r"^cannot read the Kubernetes Job ml/sm-train-ns1-try1: the API server cannot be "
        r"reached \(\[Errno 111\] Connection refused\); check --kubeconfig and --context$",
    ):
        backend(cluster, tmp_path).state("ml/sm-train-ns1-try1")


# --- a Job followed: state, log, stop -------------------------------------------------------


def submitted(
    fake: FakeKubernetes,
    folder: Path,
    run_id: str,
    script: str,
    *,
    deadline: int = 0,
    options: dict[str, str] | None = None,
) -> tuple[Kubernetes, str]:
    """A Job whose container runs the Python ``script`` instead of a step (within ``deadline``
    seconds, shorter than --max-runtime may be): the backend's manifest otherwise."""
    operator = backend(fake, folder, **(options or {}))
    job = a_job(run_id)
    request = operator.request(job, asking("1", "1G", image=operator.config.image))
    request["spec"]["template"]["spec"]["containers"][0]["command"] = ["python", "-c", script]
    if deadline:
        request["spec"]["activeDeadlineSeconds"] = deadline
    job_id, _ = operator.submit(job, request)
    return operator, job_id


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_the_pod_gets_the_secret_as_environment_and_its_log_is_followed_to_the_end(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    script = (
        "import hashlib, os, time\n"
        "print('one')\n"
        "time.sleep(0.5)\n"
        "for name in sorted(os.environ):\n"
        "    if name.startswith('STACKMAGIC_') and name.endswith(('PASSWORD', 'KEY')):\n"
        "        print(name, hashlib.sha256(os.environ[name].encode()).hexdigest()[:16])\n"
        "print('{\"loss\": 0.5}')\n"
    )
    operator, job_id = submitted(cluster, tmp_path, "log1", script)
    seen: list[str] = []
    cursor = None

    def ended() -> bool:
        nonlocal cursor
        phase = operator.state(job_id).phase
        more, cursor = operator.logs(job_id, cursor)
        seen.extend(more)
        return phase == SUCCEEDED

    wait_for(ended, timeout=30, what="the Job's end")
    assert seen == [
        "one",
        f"STACKMAGIC_ARTIFACT_STORE_SECRET_ACCESS_KEY {fingerprint(S3_CANARY)}",
        f"STACKMAGIC_METADATA_STORE_PASSWORD {fingerprint(DB_CANARY)}",
        '{"loss": 0.5}',
    ], "each line once, in order, a JSON one as printed"
    assert operator.logs(job_id, cursor) == ([], cursor)
    assert DB_CANARY not in sent(cluster) and S3_CANARY not in sent(cluster)
    secret_requests = [(r.method, r.path) for r in cluster.requests if "/secrets" in r.path]
    assert secret_requests == [("POST", "/api/v1/namespaces/ml/secrets")], "the test's own only"


def test_a_failing_container_fails_the_job_with_its_exit_code(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    operator, job_id = submitted(cluster, tmp_path, "fail1", "raise SystemExit(3)")
    state = wait_for(lambda: (s := operator.state(job_id)).phase == FAILED and s, timeout=30)
    assert (state.reason, state.interrupted) == ("Error (exit code 3)", False)


def test_a_job_past_its_deadline_fails_and_its_pod_is_killed(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    operator, job_id = submitted(
        cluster, tmp_path, "late1", "import time; time.sleep(60)", deadline=1
    )
    state = wait_for(lambda: (s := operator.state(job_id)).phase == FAILED and s, timeout=30)
    assert state.reason == "DeadlineExceeded: Job was active longer than specified deadline"
    assert not cluster.pods and not cluster.running_containers()


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (
            {"image": "team/missing:1"},
            r"^(ErrImagePull|ImagePullBackOff): .+ image \"team/missing:1\"",
        ),
        ({"store_secret": "nothing"}, r'^CreateContainerConfigError: secret "nothing" not found$'),
    ],
)
def test_a_pod_that_cannot_start_fails_the_job_at_the_second_look_and_the_job_goes(
    cluster: FakeKubernetes, tmp_path: Path, options: dict[str, str], reason: str
) -> None:
    operator, job_id = submitted(cluster, tmp_path, "stuck1", "print('never')", options=options)
    assert operator.state(job_id).phase == PENDING, "a first look may catch a passing hiccup"
    assert operator.logs(job_id, None) == ([], 0), "a pod not started has no lines yet"
    state = operator.state(job_id)
    assert state.phase == FAILED and re.match(reason, state.reason), state.reason
    assert cluster.deleted == [job_id] and not cluster.pods, "no pod left pending"
    assert operator.state(job_id) == state


def test_an_evicted_pod_is_an_interruption(cluster: FakeKubernetes, tmp_path: Path) -> None:
    operator, job_id = submitted(
        cluster, tmp_path, "evict1", "print('up', flush=True)\nimport time; time.sleep(60)"
    )
    wait_for(lambda: operator.logs(job_id, None)[0] == ["up"], timeout=30, what="the start")
    cluster.evict(NAMESPACE, job_id.split("/")[1])
    state = operator.state(job_id)
    assert (state.phase, state.interrupted) == (FAILED, True)
    assert state.reason.startswith("Evicted: The node was low on resource: memory.")


def test_a_stopped_job_goes_with_its_pod(cluster: FakeKubernetes, tmp_path: Path) -> None:
    operator, job_id = submitted(
        cluster, tmp_path, "stop1", "print('up', flush=True)\nimport time; time.sleep(60)"
    )
    wait_for(lambda: operator.logs(job_id, None)[0] == ["up"], timeout=30, what="the start")
    [pod] = cluster.pods.values()

    operator.stop(job_id)

    assert cluster.deleted == [job_id] and not cluster.pods
    assert pod.sandbox is not None and pod.sandbox.wait(10) != 0, "its container was killed"
    assert operator.state(job_id).phase == STOPPED
    operator.stop(job_id)  # gone already: nothing to do, no error


def test_the_job_reads_no_secret_itself() -> None:
    with pytest.raises(StackmagicError, match="gets the stores' secrets as its environment"):
        Kubernetes.read_secret({})


# --- runs ----------------------------------------------------------------------------------


@pytest.fixture
def kubernetes_stack(
    terminal: Callable[..., Result],
    team_database: Database,
    cluster: FakeKubernetes,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Callable[..., ArtifactStore]:
    """Stack ``team`` with step operator ``gpu`` on the fake cluster, given more ``flags``."""

    def make(*flags: str) -> ArtifactStore:
        return register_operator_stack(
            terminal,
            team_database,
            request,
            [
                "--type=kubernetes",
                f"--kubeconfig={kubeconfig_of(cluster, tmp_path)}",
                f"--namespace={NAMESPACE}",
                f"--image={IMAGE}",
                f"--store-secret={STORE_SECRET}",
                "--service-account=trainer",
                "--node-selector=pool=gpu",
                "--tolerations=gpu=true:NoSchedule",
                "--poll-seconds=0.2",
                *flags,
            ],
        )

    return make


def created_jobs(fake: FakeKubernetes) -> list[dict[str, Any]]:
    """The Jobs as the client sent them."""
    return [
        json.loads(r.body) for r in fake.requests if r.method == "POST" and r.path.endswith("/jobs")
    ]


def test_a_step_runs_as_a_job_on_the_cluster_tried_again_when_evicted_and_hands_its_outputs_on(
    kubernetes_stack: Callable[..., ArtifactStore],
    cluster: FakeKubernetes,
    team_database: Database,
    project: Path,
    terminal: Callable[..., Result],
    tmp_path: Path,
) -> None:
    store = kubernetes_stack()
    operator_notebook(project, "--cpu 4 --memory 16G --gpu 1 --retries 1")
    cluster.evict_on_start = 1  # the first try's node runs short of memory

    result = terminal("pipeline", "run", "operated.ipynb")

    assert result.code == 0, result.err
    assert evaluated_summary(terminal, store) == {"weights": EXPECTED_WEIGHTS, "scale": 2.0}
    run = described(terminal)
    assert [step["status"] for step in run["steps"]] == ["completed"] * 3
    first, second = created_jobs(cluster)
    assert [job["metadata"]["labels"]["stackmagic-try"] for job in (first, second)] == ["1", "2"]
    said = result.out + result.err
    assert f"kubernetes job {NAMESPACE}/{first['metadata']['name']} interrupted: Evicted: " in said
    train, name = step_of(run, "train"), second["metadata"]["name"]
    assert train["job_id"] == f"{NAMESPACE}/{name}"
    assert train["job_url"] == f"{cluster.url}/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{name}"
    [container] = second["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "16G", "nvidia.com/gpu": "1"}
    assert "train | training on 1000 rows" in said
    assert DB_CANARY not in sent(cluster) and S3_CANARY not in sent(cluster)
    logged = "\n".join(line for pod in cluster.pods.values() for line in pod.stamped)
    assert "training on 1000 rows" in logged
    assert DB_CANARY not in logged and S3_CANARY not in logged
    assert not secret_sightings([DB_CANARY, S3_CANARY], tmp_path, store, team_database, [result])


def test_a_job_whose_image_cannot_be_pulled_fails_the_step_in_one_line(
    kubernetes_stack: Callable[..., ArtifactStore],
    cluster: FakeKubernetes,
    project: Path,
    terminal: Callable[..., Result],
) -> None:
    kubernetes_stack()
    operator_notebook(project, "--image team/missing:1")

    result = terminal("pipeline", "run", "operated.ipynb")

    assert result.code != 0
    run = described(terminal)
    train = step_of(run, "train")
    assert train["status"] == "failed" and step_of(run, "evaluate")["status"] == "skipped"
    assert re.fullmatch(
        rf"kubernetes job {train['job_id']} failed: (ErrImagePull|ImagePullBackOff): .+"
        rf'"team/missing:1".* \({re.escape(train["job_url"])}\)',
        train["error"],
    ), train["error"]
    assert train["error"] in result.err
    assert cluster.deleted == [train["job_id"]] and not cluster.pods, "nothing left pending"


def test_a_cancelled_run_deletes_its_job_and_the_pod_goes(
    kubernetes_stack: Callable[..., ArtifactStore],
    cluster: FakeKubernetes,
    project: Path,
    terminal: Callable[..., Result],
) -> None:
    kubernetes_stack()
    notebook = write_notebook(
        project / "slow.ipynb",
        "%%step load\nrows = [1, 2, 3]",
        "%%step wait --operator gpu\nimport time\nprint('waiting', flush=True)\n"
        "time.sleep(60)\ntotal = sum(rows)",
        "%%step report\nprint(total)",
    )
    with started_run(notebook) as follower:
        wait_for(cluster.running_containers, timeout=60, what="the Job's pod to run")
        [job] = created_jobs(cluster)
        run_id = job["metadata"]["labels"]["stackmagic-run"]

        cancelled = terminal("pipeline", "cancel", run_id)

        assert cancelled.code == 0, cancelled.err
        assert follower.wait(timeout=60) == 1
    job_id = f"{NAMESPACE}/{job['metadata']['name']}"
    assert cluster.deleted == [job_id] and not cluster.pods and not cluster.running_containers()
    run = described(terminal, run_id)
    assert run["status"] == "cancelled"
    assert step_of(run, "wait")["status"] == "cancelled", json.dumps(step_of(run, "wait"))
    assert step_of(run, "report")["status"] == "skipped"
