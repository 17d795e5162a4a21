"""The kubernetes orchestrator: a run as an orchestrator pod that starts a pod per step.

Real: the ``kubernetes`` client (here, and in the orchestrator pod, which
reaches the API server as its service account would), stackmagic's runtime in
every pod, MariaDB and the S3 emulator for the team's stores. FAKE: the
Kubernetes API server (tests/fake_kubernetes.py), as strict as a real one on
Jobs and CronJobs, whose stand-in kubelet runs each pod's command in a
sandbox (tests/job_sandbox.py) with the Secret its ``envFrom`` names as
environment, and whose CronJob controller a test fires by hand.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, wait_for
from fake_http import requests_text
from fake_kubernetes import FakeKubernetes
from job_sandbox import SandboxJob
from kubernetes_cluster import NAMESPACE, STORE_SECRET, kubeconfig_of, running_cluster
from operator_pipeline import described, step_of
from services import DB_CANARY, S3_CANARY, Database
from team import bucket_options, register_team_stack, secret_sightings

from notebooks import write_notebook
from stackmagic.stores.artifacts import ArtifactStore

IMAGE = "stackmagic/team:1"
CANARIES = [DB_CANARY, S3_CANARY]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FakeKubernetes]:
    with running_cluster(tmp_path) as fake:
        yield fake


@pytest.fixture
def kubernetes_stack(
    terminal: Callable[..., Result],
    team_database: Database,
    cluster: FakeKubernetes,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> ArtifactStore:
    """Stack ``team`` (active): MariaDB, an S3 bucket, the kubernetes orchestrator ``kf``."""
    _, bucket_flags, store = bucket_options("s3", request)
    register_team_stack(
        terminal,
        team_database,
        bucket_flags,
        orchestrator=[
            "--type=kubernetes",
            f"--kubeconfig={kubeconfig_of(cluster, tmp_path)}",
            f"--namespace={NAMESPACE}",
            f"--image={IMAGE}",
            f"--store-secret={STORE_SECRET}",
            "--service-account=pipelines",
            "--tolerations=pool=ml:NoSchedule",
            "--retries=1",
            "--parallelism=2",
            "--ttl-seconds-after-finished=600",
            "--poll-seconds=0.3",
        ],
    )
    return store


def diamond(folder: Path) -> Path:
    """a; b and c after it (each printing when it ran); d after both."""
    window = "print('window', {name!r}, started, time.time(), flush=True)"
    return write_notebook(
        folder / "diamond.ipynb",
        "import time",
        "%%step a --retries 1\nbase = [x * scale for x in range(10)]",
        "%%step b --cpu 1 --memory 512M\nstarted = time.time()\ntime.sleep(2)\n"
        "evens = [x * 2 for x in base]\n" + window.format(name="b"),
        "%%step c\nstarted = time.time()\ntime.sleep(2)\n"
        "odds = [x * 2 + 1 for x in base]\n" + window.format(name="c"),
        "%%step d\ntotal = sum(evens) + sum(odds)\nprint('total', total)",
        parameters="scale = 1",
    )


def slow(folder: Path) -> Path:
    return write_notebook(
        folder / "slow.ipynb",
        "%%step wait\nimport time\nprint('waiting', flush=True)\ntime.sleep(60)\ntotal = 6",
        "%%step report\nprint(total)",
    )


def created(fake: FakeKubernetes, kind: str = "jobs") -> list[dict[str, Any]]:
    """The Jobs (or CronJobs) as the clients sent them, from here and from the pods."""
    return [
        json.loads(r.body) for r in fake.requests if r.method == "POST" and r.path.endswith(kind)
    ]


def windows(fake: FakeKubernetes) -> dict[str, tuple[float, float]]:
    """When the diamond's b and c ran, as their pods printed it."""
    found = {}
    for pod in fake.pods.values():
        for line in pod.sandbox.lines if pod.sandbox else []:
            if match := re.search(r"window (\w) ([\d.]+) ([\d.]+)", line):
                found[match.group(1)] = (float(match.group(2)), float(match.group(3)))
    return found


def test_a_diamond_runs_as_a_pod_per_step_in_parallel_on_a_schedule_too_secrets_by_reference(
    kubernetes_stack: ArtifactStore,
    cluster: FakeKubernetes,
    team_database: Database,
    project: Path,
    terminal: Callable[..., Result],
    tmp_path: Path,
) -> None:
    diamond(project)
    cluster.evict_on_start = 1  # the first step pod's node runs short of memory

    dry = terminal("pipeline", "run", "diamond.ipynb", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    previewed = json.loads(dry.out)["job"]
    assert not created(cluster), "a dry run starts nothing"

    result = terminal("pipeline", "run", "diamond.ipynb", "--wait", "-p", "scale", "2")

    assert result.code == 0, result.err
    run = described(terminal)
    assert run["status"] == "completed"
    assert [step["status"] for step in run["steps"]] == ["completed"] * 4
    loaded = terminal("pipeline", "load", "latest", "d.total", "--json")
    total = kubernetes_stack.load(json.loads(loaded.out)["total"]["uri"])
    assert total == sum(range(0, 40, 4)) + sum(range(1, 41, 4))
    # one orchestrator Job, then a Job per step try: a's first was evicted and tried again
    orchestrator, *steps = created(cluster)
    assert orchestrator["metadata"]["name"] == f"stackmagic-{run['id']}"
    assert previewed["kind"] == "Job" and previewed["metadata"]["name"].startswith("stackmagic-")
    assert previewed["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [
        {"secretRef": {"name": STORE_SECRET}}
    ]
    assert run["orchestrator_run_id"] == f"{NAMESPACE}/stackmagic-{run['id']}"
    tries = [
        (j["metadata"]["labels"]["stackmagic-step"], j["metadata"]["labels"]["stackmagic-try"])
        for j in steps
    ]
    assert sorted(tries) == [("a", "1"), ("a", "2"), ("b", "1"), ("c", "1"), ("d", "1")]
    assert {j["metadata"]["labels"]["stackmagic-run"] for j in steps} == {run["id"]}
    assert step_of(run, "a")["attempts"] == 2
    for step in run["steps"]:  # describe names each step's Job
        assert step["job_id"].startswith(f"{NAMESPACE}/sm-{step['name']}-{run['id']}-try")
    # b and c ran at the same time, each in its own pod
    (b_start, b_end), (c_start, c_end) = windows(cluster)["b"], windows(cluster)["c"]
    assert b_start < c_end and c_start < b_end, "b and c overlapped"
    [b_job] = [j for j in steps if j["metadata"]["labels"]["stackmagic-step"] == "b"]
    [container] = b_job["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "512M"}
    # every pod: the image, the service account, the toleration, the Secret by reference
    for job in [orchestrator, *steps]:
        pod = job["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "pipelines"
        assert pod["tolerations"] == [
            {"key": "pool", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
        ]
        assert pod["containers"][0]["image"] == IMAGE
        assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": STORE_SECRET}}]
        assert job["spec"]["ttlSecondsAfterFinished"] == 600
    assert orchestrator["spec"]["backoffLimit"] == 1
    # followed: the steps, and the orchestrator pod's log with the steps' lines in it
    said = result.out + result.err
    assert "pod | stackmagic: run " in said and "pod | d | total 370" in said
    assert re.search(r"pod \| a: try 1 failed: kubernetes job \S+ interrupted: Evicted", said)
    logs = terminal("pipeline", "logs", "latest")
    assert logs.code == 0 and "d | total 370" in logs.out, logs.err
    # a schedule: a CronJob whose Job records a new run, named after it (steps cached now)
    scheduled = terminal(
        "pipeline", "schedule", "diamond.ipynb", "--cron", "0 3 * * *", "-p", "scale", "2"
    )
    assert scheduled.code == 0, scheduled.err
    [cronjob] = created(cluster, "cronjobs")
    assert cronjob["spec"]["schedule"] == "0 3 * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert cronjob["spec"]["timeZone"] == "Etc/UTC"
    template = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert template["containers"][0]["envFrom"] == [{"secretRef": {"name": STORE_SECRET}}]
    fired = cluster.fire(NAMESPACE, cronjob["metadata"]["name"])  # 03:00 came
    again = wait_for(
        lambda: next(
            (r for r in runs(terminal) if r["schedule"] and r["status"] != "running"), None
        ),
        timeout=60,
        what="the scheduled run to end",
    )
    assert again["status"] == "completed" and again["id"] != run["id"], again
    assert again["schedule"] == "diamond" and again["parameters"] == {"scale": 2}
    assert described(terminal, again["id"])["orchestrator_run_id"] == f"{NAMESPACE}/{fired}"
    unscheduled = terminal("pipeline", "unschedule", "diamond")
    assert unscheduled.code == 0, unscheduled.err
    assert not cluster.cronjobs
    assert (NAMESPACE, fired) in cluster.jobs, "the Job it started ends as it would"
    # no secret in any request, pod log, file, object, row or output
    everything = requests_text([r for r in cluster.requests if "/secrets" not in r.path])
    logged = "\n".join(
        line for pod in cluster.pods.values() for line in pod.sandbox.lines if pod.sandbox
    )
    assert not [c for c in CANARIES if c in everything or c in logged or c in dry.out]
    outputs = [result, logs, scheduled]
    assert not secret_sightings(CANARIES, tmp_path, kubernetes_stack, team_database, outputs)


def runs(terminal: Callable[..., Result]) -> list[dict[str, Any]]:
    listed = terminal("pipeline", "runs", "--json")
    assert listed.code == 0, listed.err
    answer: list[dict[str, Any]] = json.loads(listed.out)
    return answer


def wait_pods(cluster: FakeKubernetes, run_id: str) -> list[str]:
    return [name for name in cluster.running_containers() if name.startswith(f"sm-wait-{run_id}")]


def orchestrator_pod(cluster: FakeKubernetes, run_id: str) -> SandboxJob:
    """The container of the run's orchestrator pod that runs."""
    [running] = [
        p.sandbox
        for p in cluster.pods.values()
        if p.job == f"stackmagic-{run_id}" and p.sandbox and p.sandbox.state() == "running"
    ]
    return running


def run_started(terminal: Callable[..., Result], cluster: FakeKubernetes) -> str:
    """``slow.ipynb`` run without waiting, once its ``wait`` step's pod runs: the run's id."""
    result = terminal("pipeline", "run", "slow.ipynb", "--json")
    assert result.code == 0, result.err
    run_id: str = json.loads(result.out)["id"]
    wait_for(
        lambda: wait_pods(cluster, run_id),
        timeout=60,
        what="the wait step's pod to run",
    )
    return run_id


def test_cancel_leaves_no_pod_a_lost_pod_is_replaced_a_vanished_one_fails_the_run(
    kubernetes_stack: ArtifactStore,
    cluster: FakeKubernetes,
    project: Path,
    terminal: Callable[..., Result],
) -> None:
    slow(project)
    refusals = [
        terminal("orchestrator", "register", "k8s", "--type=kubernetes"),
        terminal("orchestrator", "update", "kf", "--store-secret="),
        terminal("pipeline", "run", "slow.ipynb", "--dry-run"),
        terminal("orchestrator", "update", "kf", f"--store-secret={STORE_SECRET}"),
    ]
    no_image, _, no_secret, _ = refusals
    assert no_image.err.strip().splitlines() == [
        "stackmagic: error: the kubernetes orchestrator flavor needs --image (see `stackmagic orchestrator "
        "flavors`)"
    ]
    [line] = no_secret.err.strip().splitlines()
    assert "--store-secret" in line and "STACKMAGIC_METADATA_STORE_PASSWORD=..." in line, line
    assert [r.code for r in refusals] == [2, 0, 2, 0], refusals
    run_id = run_started(terminal, cluster)
    # its orchestrator pod does not answer (its node is cut off): the cancel reaches every pod
    os.killpg(orchestrator_pod(cluster, run_id).process.pid, signal.SIGSTOP)

    cancelled = terminal("pipeline", "cancel", run_id)

    assert cancelled.code == 0, cancelled.err
    assert not cluster.jobs and not cluster.pods and not cluster.running_containers()
    assert f"{NAMESPACE}/stackmagic-{run_id}" in cluster.deleted
    run = described(terminal, run_id)
    assert run["status"] == "cancelled"
    assert step_of(run, "wait")["status"] == "cancelled"
    assert step_of(run, "report")["status"] == "skipped"

    run_id = run_started(terminal, cluster)
    [first_wait] = wait_pods(cluster, run_id)
    cluster.evict(NAMESPACE, f"stackmagic-{run_id}")  # --retries=1: its Job starts another pod
    assert described(terminal, run_id)["status"] == "running"
    wait_for(
        lambda: [name for name in wait_pods(cluster, run_id) if name != first_wait],
        timeout=60,
        what="the new orchestrator pod to start the wait step again",
    )
    assert f"{NAMESPACE}/{first_wait.rsplit('-', 1)[0]}" in cluster.deleted, "its old Job went"
    assert "orchestrator-pod-2.log" in terminal("pipeline", "logs", run_id).out
    with cluster.lock:  # the orchestrator pod's node is gone, and its Job with it
        orchestrator_pod(cluster, run_id).stop()
        del cluster.jobs[NAMESPACE, f"stackmagic-{run_id}"]
        for name in [p.name for p in cluster.pods.values() if p.job == f"stackmagic-{run_id}"]:
            del cluster.pods[NAMESPACE, name]

    run = described(terminal, run_id)

    assert run["status"] == "failed"
    assert run["error"] == (
        f"the orchestrator pod of Job {NAMESPACE}/stackmagic-{run_id} ended before the run "
        "did: its Job was deleted"
    )
    assert step_of(run, "wait")["status"] == "failed"
    assert not cluster.running_containers(), "the run's step pods went with it"
