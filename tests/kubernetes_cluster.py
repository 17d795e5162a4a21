"""The FAKE Kubernetes cluster the kubernetes tests share (tests/fake_kubernetes.py), set up
as a team's: namespace ``ml`` with the stores' Secret in it, reached through a kubeconfig."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from fake_http import serve
from fake_kubernetes import TOKEN, FakeKubernetes
from operator_pipeline import STORE_SECRETS

NAMESPACE = "ml"
STORE_SECRET = "team-stores"


@contextlib.contextmanager
def running_cluster(folder: Path) -> Iterator[FakeKubernetes]:
    """The fake API server, namespace ``ml`` made and the stores' Secret put in it as a user
    does with kubectl; no container left running afterwards."""
    with contextlib.contextmanager(serve)(FakeKubernetes(folder / "node")) as fake:
        from kubernetes import client
        from kubernetes.config import new_client_from_config

        api = client.CoreV1Api(new_client_from_config(str(kubeconfig_of(fake, folder))))
        api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        api.create_namespaced_secret(
            NAMESPACE,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=STORE_SECRET), string_data=STORE_SECRETS
            ),
        )
        try:
            yield fake
        finally:
            for pod in fake.pods.values():
                if pod.sandbox is not None:
                    pod.sandbox.stop()


def kubeconfig_of(fake: FakeKubernetes, folder: Path) -> Path:
    """A kubeconfig whose one cluster is the fake, and whose user has its token."""
    path = folder / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
                "users": [{"name": "ci", "user": {"token": TOKEN}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "ci"}}],
                "current-context": "fake",
            }
        )
    )
    return path
