"""A FAKE Kubernetes API server, for tests: no cluster can run here.

It serves the few endpoints the real ``kubernetes`` client calls for the
kubernetes step operator and orchestrator (namespaces, Secrets, batch/v1 Jobs
and CronJobs, pods and a pod's log), to a client holding its token, and
records every request, headers and body, for the tests to inspect.

It is as strict as an API server asked with ``fieldValidation=Strict`` (see
tests/fake_kubernetes_manifests.py): a Job or CronJob is checked field by
field and refused with the real status codes and ``Status`` bodies; a label
selector is honoured (listing pods, deleting a collection of Jobs); a Job
deleted without a propagation policy orphans its pods, as batch/v1 does.
Parameters it does not implement are refused, not ignored.

Its job controller and kubelet are stand-ins (tests/fake_kubernetes_kubelet.py):
a Job gets a pod at once, and another after a failed one while its
``backoffLimit`` and ``podFailurePolicy`` allow; the pod's container runs in
tests/job_sandbox.py with the container's ``env`` (the downward API's fields
of the pod too), the data of the Secrets its ``envFrom`` names
(base64-decoded, as the kubelet does), the node's AWS testing identity, and
``KUBECONFIG`` naming this server with a token: what a pod's service account
gives it. A pod whose image has ``missing`` in its name cannot be pulled; one
whose Secret is missing waits with CreateContainerConfigError (and starts
once the Secret exists). A test evicts a pod as a node short of memory does,
and fires a CronJob as its controller does (tests/fake_kubernetes_cronjobs.py).
OnFailure pods are not restarted.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fake_http import Request
from fake_kubernetes_cronjobs import CronJobs
from fake_kubernetes_kubelet import (
    Pod,
    conditions,
    container_status,
    evicted,
    fail_job,
    field_value,
    in_cluster_config,
)
from fake_kubernetes_manifests import (
    NAME,
    Answer,
    invalid_job,
    now,
    selector,
    status,
)
from job_sandbox import SandboxJob

TOKEN = "fake-kubernetes-token"
_IN = r"/namespaces/(?P<namespace>[^/]+)"


@dataclass
class FakeKubernetes(CronJobs):
    #: where the pods' containers run, a folder each
    folder: Path
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    namespaces: set[str] = field(default_factory=lambda: {"default"})
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], Pod] = field(default_factory=dict)
    cronjobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: when each Job's activeDeadlineSeconds runs out (time.monotonic)
    deadlines: dict[tuple[str, str], float] = field(default_factory=dict)
    #: "NAMESPACE/NAME" of the Jobs deleted, in the order they went
    deleted: list[str] = field(default_factory=list)
    #: step pods (labelled stackmagic-step) evicted as soon as their container starts (a node
    #: short of memory), this many
    evict_on_start: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)

    def evict(self, namespace: str, job: str) -> None:
        """The node short of memory evicts the Job's running pod, as its kubelet does."""
        with self.lock:
            [pod] = [p for (ns, _), p in self.pods.items() if ns == namespace and p.job == job]
            assert pod.sandbox is not None, "the pod's container has not started"
            evicted(pod)

    def running_containers(self) -> list[str]:
        with self.lock:
            return [
                p.name for p in self.pods.values() if p.sandbox and p.sandbox.state() == "running"
            ]

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Answer:
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return status(401, "Unauthorized", "Unauthorized")
        routes: list[tuple[str, str, Callable[..., Answer]]] = [
            ("POST", r"/api/v1/namespaces", self._create_namespace),
            ("POST", rf"/api/v1{_IN}/secrets", self._create_secret),
            ("GET", rf"/api/v1{_IN}/secrets/(?P<name>[^/]+)", self._get_secret),
            ("POST", rf"/apis/batch/v1{_IN}/jobs", self._create_job),
            ("GET", rf"/apis/batch/v1{_IN}/jobs/(?P<name>[^/]+)", self._get_job),
            ("DELETE", rf"/apis/batch/v1{_IN}/jobs/(?P<name>[^/]+)", self._delete_job),
            ("DELETE", rf"/apis/batch/v1{_IN}/jobs", self._delete_jobs),
            *self.cronjob_routes(_IN),
            ("GET", rf"/api/v1{_IN}/pods", self._list_pods),
            ("GET", rf"/api/v1{_IN}/pods/(?P<name>[^/]+)/log", self._log),
        ]
        for verb, pattern, answer in routes:
            found = re.fullmatch(pattern, path)
            if found and verb == method:
                with self.lock:
                    return answer(query, body, **found.groupdict())
        return status(404, "NotFound", "the server could not find the requested resource")

    # -- namespaces and Secrets ------------------------------------------------------------

    def _create_namespace(self, query: Any, body: bytes) -> Answer:
        manifest = json.loads(body)
        name = manifest.get("metadata", {}).get("name", "")
        if refused := _other_kind(manifest, "v1", "Namespace") or _bad_name("Namespace", name):
            return refused
        self.namespaces.add(name)
        return 201, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}

    def _create_secret(self, query: Any, body: bytes, namespace: str) -> Answer:
        manifest = json.loads(body)
        name = manifest.get("metadata", {}).get("name", "")
        if refused := _other_kind(manifest, "v1", "Secret") or _bad_name("Secret", name):
            return refused
        if namespace not in self.namespaces:
            return status(404, "NotFound", f'namespaces "{namespace}" not found')
        data = dict(manifest.get("data") or {})
        try:
            for value in data.values():
                base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError):
            return status(400, "BadRequest", "Secret cannot be handled: illegal base64 data")
        for key, text in (manifest.get("stringData") or {}).items():
            data[key] = base64.b64encode(text.encode()).decode()
        metadata = {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())}
        stored = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "data": data}
        self.secrets[namespace, name] = {**stored, "type": manifest.get("type", "Opaque")}
        return 201, self.secrets[namespace, name]

    def _get_secret(self, query: Any, body: bytes, namespace: str, name: str) -> Answer:
        if (namespace, name) not in self.secrets:
            return status(404, "NotFound", f'secrets "{name}" not found')
        return 200, self.secrets[namespace, name]

    # -- Jobs and their pods (the job controller and the kubelet) --------------------------

    def _create_job(self, query: Any, body: bytes, namespace: str) -> Answer:
        manifest = json.loads(body)
        name = str((manifest.get("metadata") or {}).get("name", ""))
        if refused := _other_kind(manifest, "batch/v1", "Job") or invalid_job(manifest):
            return refused
        if manifest["metadata"].get("namespace", namespace) != namespace:
            return status(400, "BadRequest", "the namespace of the provided object does not match")
        if namespace not in self.namespaces:
            return status(404, "NotFound", f'namespaces "{namespace}" not found')
        if (namespace, name) in self.jobs:
            return status(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
        uid, spec = str(uuid.uuid4()), manifest["spec"]
        spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(
            {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name}
        )
        spec["template"]["metadata"]["labels"].update({"controller-uid": uid, "job-name": name})
        spec.update(
            selector={"matchLabels": {"batch.kubernetes.io/controller-uid": uid}},
            completions=spec.get("completions", 1),
            parallelism=spec.get("parallelism", 1),
            backoffLimit=spec.get("backoffLimit", 6),
            completionMode="NonIndexed",
            suspend=False,
        )
        manifest["metadata"].update(namespace=namespace, uid=uid, creationTimestamp=now())
        manifest["metadata"].setdefault("labels", dict(spec["template"]["metadata"]["labels"]))
        manifest["status"] = {"startTime": now(), "active": 0, "uncountedTerminatedPods": {}}
        self.jobs[namespace, name] = manifest
        self.deadlines[namespace, name] = time.monotonic() + spec.get(
            "activeDeadlineSeconds", float("inf")
        )
        self._start_pod(manifest)
        return 201, manifest

    def _start_pod(self, job: dict[str, Any]) -> None:
        metadata, template = job["metadata"], job["spec"]["template"]
        suffix = "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        owner = {"apiVersion": "batch/v1", "kind": "Job", "controller": True}
        pod = Pod(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{metadata['name']}-{suffix}",
                    "namespace": metadata["namespace"],
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": now(),
                    "labels": dict(template["metadata"]["labels"]),
                    "ownerReferences": [
                        {**owner, "name": metadata["name"], "uid": metadata["uid"]}
                    ],
                },
                "spec": {**json.loads(json.dumps(template["spec"])), "nodeName": "node-1"},
                "status": {"phase": "Pending", "startTime": now()},
            }
        )
        self.pods[metadata["namespace"], pod.name] = pod
        self._kubelet(pod)

    def _kubelet(self, pod: Pod) -> None:
        """Start the pod's container if it can start, else say why it waits; follow it."""
        pod_status = pod.manifest["status"]
        if pod.sandbox is None and pod_status["phase"] == "Pending":
            [container] = pod.manifest["spec"]["containers"]
            namespace, image = pod.manifest["metadata"]["namespace"], container["image"]
            if "missing" in image:  # the kubelet tries again, backing off
                pod.pulls += 1
                waiting = (
                    ("ErrImagePull", f'failed to pull image "{image}": not found')
                    if pod.pulls % 2
                    else ("ImagePullBackOff", f'Back-off pulling image "{image}"')
                )
                pod_status["containerStatuses"] = [container_status(pod, waiting=waiting)]
                return
            environment = {
                "KUBECONFIG": str(
                    in_cluster_config(self.folder, self.url, TOKEN)
                ),  # its service account, in effect
                **{v["name"]: field_value(v, pod.manifest) for v in container.get("env", [])},
            }
            for source in container.get("envFrom", []):
                secret = self.secrets.get((namespace, source["secretRef"]["name"]))
                if secret is None:
                    waiting = (
                        "CreateContainerConfigError",
                        f'secret "{source["secretRef"]["name"]}" not found',
                    )
                    pod_status["containerStatuses"] = [container_status(pod, waiting=waiting)]
                    return
                environment.update(
                    {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
                )
            command = [*container["command"], *container.get("args", [])]
            pod.sandbox = SandboxJob(command, self.folder / pod.name, environment)
            if self.evict_on_start and "stackmagic-step" in pod.manifest["metadata"]["labels"]:
                self.evict_on_start -= 1
                evicted(pod)
        if pod.sandbox is None or pod_status.get("reason") == "Evicted":
            return
        code = pod.sandbox.exit_code
        if code is None:
            pod_status.update(phase="Running", containerStatuses=[container_status(pod)])
        else:
            ended = (code, "Completed" if code == 0 else "Error")
            pod_status.update(
                phase="Succeeded" if code == 0 else "Failed",
                containerStatuses=[container_status(pod, terminated=ended)],
            )

    def _synced(self, job: dict[str, Any]) -> dict[str, Any]:
        """The Job as its controller leaves it, its pods looked at first."""
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        pods = [p for (ns, _), p in self.pods.items() if ns == namespace and p.job == name]
        for pod in pods:
            self._kubelet(pod)
        phases = [pod.manifest["status"]["phase"] for pod in pods]
        counts = job["status"]
        if counts.get("conditions"):
            return job
        counts.update(
            active=phases.count("Pending") + phases.count("Running"),
            ready=phases.count("Running"),
            succeeded=phases.count("Succeeded"),
            failed=phases.count("Failed"),
        )
        if counts["succeeded"] >= job["spec"]["completions"]:
            said = "Reached expected number of succeeded pods"
            counts.update(
                completionTime=now(),
                conditions=conditions("CompletionsReached", said, "SuccessCriteriaMet", "Complete"),
            )
        elif failing := fail_job(job, pods):
            counts["conditions"] = conditions(
                "PodFailurePolicy", failing, "FailureTarget", "Failed"
            )
        elif counts["failed"] > job["spec"]["backoffLimit"]:
            said = "Job has reached the specified backoff limit"
            counts["conditions"] = conditions(
                "BackoffLimitExceeded", said, "FailureTarget", "Failed"
            )
        elif time.monotonic() > self.deadlines[namespace, name]:  # its pods are killed
            for pod in pods:
                if pod.manifest["status"]["phase"] in ("Pending", "Running"):
                    if pod.sandbox is not None:
                        pod.sandbox.stop()
                    del self.pods[namespace, pod.name]
            said = "Job was active longer than specified deadline"
            counts.update(active=0, failed=counts["failed"] + counts["active"])
            counts["conditions"] = conditions("DeadlineExceeded", said, "FailureTarget", "Failed")
        elif counts["failed"] and not counts["active"]:
            self._start_pod(job)
        return job

    def _get_job(self, query: Any, body: bytes, namespace: str, name: str) -> Answer:
        if (namespace, name) not in self.jobs:
            return status(404, "NotFound", f'jobs.batch "{name}" not found')
        return 200, self._synced(self.jobs[namespace, name])

    def _delete_job(
        self, query: Mapping[str, list[str]], body: bytes, namespace: str, name: str
    ) -> Answer:
        policy = _policy(query, body)
        if policy not in ("Orphan", "Background", "Foreground"):
            return status(400, "BadRequest", f'propagationPolicy "{policy}" is not supported')
        if (namespace, name) not in self.jobs:
            return status(404, "NotFound", f'jobs.batch "{name}" not found')
        self._deleted(namespace, name, policy)
        return status(200, "", f'jobs.batch "{name}" deleted')

    def _delete_jobs(self, query: Mapping[str, list[str]], body: bytes, namespace: str) -> Answer:
        """deletecollection: the Jobs the label selector picks (all, without one)."""
        if refused := _unimplemented(query, "labelSelector", "propagationPolicy"):
            return refused
        policy = _policy(query, body)
        if policy not in ("Orphan", "Background", "Foreground"):
            return status(400, "BadRequest", f'propagationPolicy "{policy}" is not supported')
        try:
            wanted = selector((query.get("labelSelector") or [""])[0])
        except ValueError as error:
            return status(400, "BadRequest", f"unable to parse requirement: {error}")
        items = [
            job
            for (ns, _), job in list(self.jobs.items())
            if ns == namespace and all(test(job["metadata"].get("labels", {})) for test in wanted)
        ]
        for job in items:
            self._deleted(namespace, job["metadata"]["name"], policy)
        return 200, {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": items}

    def _deleted(self, namespace: str, name: str, policy: str) -> None:
        """The Job gone; its pods with it, unless orphaned."""
        del self.jobs[namespace, name]
        self.deleted.append(f"{namespace}/{name}")
        for key, pod in list(self.pods.items()):
            if key[0] == namespace and pod.job == name:
                if policy == "Orphan":  # the pod runs on, nobody's
                    pod.manifest["metadata"].pop("ownerReferences", None)
                else:  # the garbage collector deletes the pod: its container is killed
                    if pod.sandbox is not None:
                        pod.sandbox.stop()
                    del self.pods[key]

    def _list_pods(self, query: Mapping[str, list[str]], body: bytes, namespace: str) -> Answer:
        if refused := _unimplemented(query, "labelSelector"):
            return refused
        try:
            wanted = selector((query.get("labelSelector") or [""])[0])
        except ValueError as error:
            return status(400, "BadRequest", f"unable to parse requirement: {error}")
        items = []
        for (ns, _), pod in self.pods.items():
            if ns == namespace and all(test(pod.manifest["metadata"]["labels"]) for test in wanted):
                self._kubelet(pod)
                items.append(pod.manifest)
        return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}

    def _log(
        self, query: Mapping[str, list[str]], body: bytes, namespace: str, name: str
    ) -> Answer:
        """The container's log, as a JSON string (what fake_http serves; the client reads it
        as it reads the real text). With ``timestamps`` each line starts with its time."""
        pod = self.pods.get((namespace, name))
        if refused := _unimplemented(query, "container", "timestamps"):
            return refused
        if pod is None:
            return status(404, "NotFound", f'pods "{name}" not found')
        [container] = pod.manifest["spec"]["containers"]
        asked = (query.get("container") or [container["name"]])[0]
        if asked != container["name"]:
            return status(400, "BadRequest", f"container {asked} is not valid for pod {name}")
        self._kubelet(pod)
        if pod.sandbox is None:
            [waiting] = pod.manifest["status"]["containerStatuses"]
            said = f'container "{asked}" in pod "{name}" is waiting to start: '
            return status(400, "BadRequest", said + waiting["state"]["waiting"]["reason"])
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        pod.stamped.extend(f"{stamp} {line}" for line in pod.sandbox.lines[len(pod.stamped) :])
        # parsed as Go parses a boolean: the client sends "True"
        timed = (query.get("timestamps") or [""])[0] in ("1", "t", "T", "true", "True", "TRUE")
        lines = pod.stamped if timed else [line.partition(" ")[2] for line in pod.stamped]
        return 200, "".join(f"{line}\n" for line in lines)


def _policy(query: Mapping[str, list[str]], body: bytes) -> str:
    """The propagation policy asked for: batch/v1's default orphans the pods."""
    given = (query.get("propagationPolicy") or [""])[0]
    return given or json.loads(body or b"{}").get("propagationPolicy") or "Orphan"


def _unimplemented(query: Mapping[str, list[str]], *known: str) -> Answer | None:
    unknown = set(query) - {*known, "pretty"}
    if unknown:
        return status(400, "BadRequest", f"this fake does not implement {sorted(unknown)}")
    return None


def _other_kind(manifest: dict[str, Any], version: str, kind: str) -> Answer | None:
    """The refusal of a body that names another kind (one that names none is this one)."""
    if manifest.get("apiVersion", version) == version and manifest.get("kind", kind) == kind:
        return None
    return status(400, "BadRequest", f"the data is not a {version} {kind}")


def _bad_name(kind: str, name: str) -> Answer | None:
    if NAME.fullmatch(name) and len(name) <= 63:
        return None
    return status(422, "Invalid", f'{kind} "{name}" is invalid: metadata.name: Invalid value')
