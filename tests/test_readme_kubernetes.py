"""The README's "Kubernetes" section, walked on the FAKE Kubernetes API server.

The README's team stack (MariaDB, the S3 emulator) and train.ipynb; the
cluster is tests/fake_kubernetes.py, whose stand-in kubelet runs every pod's
command in tests/job_sandbox.py. ``kubectl create secret`` is stood in for by
the same call through the ``kubernetes`` client; the section's Role is checked
against every call the pods and this machine made.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import job_sandbox
import pytest
import yaml
from fake_kubernetes import FakeKubernetes
from kubernetes_cluster import kubeconfig_of, running_cluster
from readme import Command, blocks, commands
from test_readme import (  # noqa: F401 - team_servers is a fixture
    MYSQL_PASSWORD,
    describe,
    team_servers,
    walk_of,
    write_readme_notebook,
)

SECTION = "Kubernetes"
#: what each call the cluster got is, as RBAC names it: (API group, resource, verb)
CALLS = [
    ("POST", r"/apis/batch/v1/namespaces/[^/]+/jobs", ("batch", "jobs", "create")),
    ("GET", r"/apis/batch/v1/namespaces/[^/]+/jobs/[^/]+", ("batch", "jobs", "get")),
    ("DELETE", r"/apis/batch/v1/namespaces/[^/]+/jobs/[^/]+", ("batch", "jobs", "delete")),
    ("DELETE", r"/apis/batch/v1/namespaces/[^/]+/jobs", ("batch", "jobs", "deletecollection")),
    ("GET", r"/api/v1/namespaces/[^/]+/pods", ("", "pods", "list")),
    ("GET", r"/api/v1/namespaces/[^/]+/pods/[^/]+/log", ("", "pods/log", "get")),
]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FakeKubernetes]:
    with running_cluster(tmp_path) as fake:
        yield fake


@pytest.mark.kernel
def test_the_kubernetes_section(
    project: Path,
    team_servers: dict[str, str],  # noqa: F811 - the fixture imported above
    cluster: FakeKubernetes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def kubectl_create_secret(command: Command) -> None:
        """Stands in for `kubectl create secret generic NAME --from-literal=KEY=VALUE`."""
        from kubernetes import client
        from kubernetes.config import new_client_from_config

        words = command.words
        literals = dict(w.split("=", 2)[1:] for w in words if w.startswith("--from-literal="))
        client.CoreV1Api(new_client_from_config(str(kubeconfig))).create_namespaced_secret(
            next(w.split("=", 1)[1] for w in words if w.startswith("--namespace=")),
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=words[4]),
                string_data={k: MYSQL_PASSWORD if v == "..." else v for k, v in literals.items()},
            ),
        )

    kubeconfig = kubeconfig_of(cluster, tmp_path)
    # the pods reach the bucket (the S3 emulator) as the README's credential chain
    identity = {key: value for key, value in os.environ.items() if key.startswith("AWS_")}
    monkeypatch.setattr(job_sandbox, "JOB_IDENTITY", identity)
    write_readme_notebook(project)
    walk = walk_of(
        project,
        substitutions={
            **team_servers,
            "--namespace=ml": (
                "--namespace=ml",
                f"--kubeconfig={kubeconfig}",
                "--poll-seconds=0.3",
            ),
        },
        stand_ins={"kubectl": kubectl_create_secret},
    )
    walk.run(Command(("stackmagic", "init")))
    [team, *_] = blocks("Team stacks: a shared database and a bucket", "bash")
    walk.run_all(c for c in commands(team.text) if c.words[:2] != ("stackmagic", "pipeline"))
    first, second = blocks(SECTION, "bash")

    walk.run_all(commands(first.text))

    run = describe(walk)
    assert (run["stack"], run["status"]) == ("team", "completed"), run
    assert all(step["job_id"].startswith("ml/sm-") for step in run["steps"])
    assert "stackmagic-" in walk.said_by("stackmagic pipeline run train.ipynb --dry-run")
    assert "orchestrator-pod-1.log" in walk.said_by("stackmagic pipeline logs latest")
    walk.run_all(commands(second.text))

    cancelled = describe(walk, run_id := walk.said_by("stackmagic pipeline cancel").split()[2])
    assert cancelled["status"] == "cancelled", cancelled
    assert not [
        j for j in cluster.jobs.values() if j["metadata"]["labels"].get("stackmagic-run") == run_id
    ]
    assert not cluster.running_containers()
    assert not cluster.cronjobs, "scheduled, then unscheduled"
    assert MYSQL_PASSWORD not in "".join(walk.said)
    # the section's Role allows every call the pods (and this machine) made but the CronJobs'
    [role] = blocks(SECTION, "yaml")
    allowed = {
        (group, resource, verb)
        for rule in yaml.safe_load(role.text)["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    kinds = {
        (request.method, request.path.split("?")[0]): [
            call
            for method, path, call in CALLS
            if request.method == method and re.fullmatch(path, request.path.split("?")[0])
        ]
        for request in cluster.requests
    }
    made = {call for calls in kinds.values() for call in calls}
    others = [
        key
        for key, calls in kinds.items()
        if not calls and not re.search(r"/(secrets|cronjobs)\b|/v1/namespaces$", key[1])
    ]
    assert not others, f"calls the Role was not checked against: {others}"
    assert len(made) == len(CALLS), "each kind of call was made"
    assert made <= allowed, made - allowed
