"""A FAKE Kubernetes API server, for tests: no cluster can run here.

It serves the few endpoints the real ``kubernetes`` client calls for the
kubernetes step operator (namespaces, Secrets, batch/v1 Jobs, pods and a
pod's log), to a client holding its token, and records every request,
headers and body, for the tests to inspect.

It is as strict as an API server asked with ``fieldValidation=Strict``: a Job
is checked field by field (names, labels, quantities, restart policy,
tolerations, envFrom) and refused with the real status codes and ``Status``
bodies; a label selector is honoured; a Job deleted without a propagation
policy orphans its pods, as batch/v1 does. Parameters it does not implement
are refused, not ignored.

Its job controller and kubelet are stand-ins: a Job gets a pod at once; the
pod's container runs in tests/job_sandbox.py with the container's ``env``, the
data of the Secrets its ``envFrom`` names (base64-decoded, as the kubelet
does) and the node's AWS testing identity. A pod whose image has ``missing``
in its name cannot be pulled; one whose Secret is missing waits with
CreateContainerConfigError (and starts once the Secret exists). A test evicts
a pod as a node short of memory does. OnFailure pods are not restarted.
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
from job_sandbox import SandboxJob

TOKEN = "fake-kubernetes-token"
_IN = r"/namespaces/(?P<namespace>[^/]+)"
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
Answer = tuple[int, Any]


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str) -> Answer:
    """An answer as the API server gives it when it does not give the object: a ``Status``."""
    return code, {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 300 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class Pod:
    """A pod and its container, as the stand-in kubelet runs it."""

    manifest: dict[str, Any]
    sandbox: SandboxJob | None = None
    #: its log lines, each with the time it was first read
    stamped: list[str] = field(default_factory=list)
    pulls: int = 0

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def job(self) -> str:
        return str(self.manifest["metadata"]["labels"]["job-name"])


@dataclass
class FakeKubernetes:
    #: where the pods' containers run, a folder each
    folder: Path
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    namespaces: set[str] = field(default_factory=lambda: {"default"})
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], Pod] = field(default_factory=dict)
    #: when each Job's activeDeadlineSeconds runs out (time.monotonic)
    deadlines: dict[tuple[str, str], float] = field(default_factory=dict)
    #: "NAMESPACE/NAME" of the Jobs deleted, in the order they went
    deleted: list[str] = field(default_factory=list)
    #: pods evicted as soon as their container starts (a node short of memory), this many
    evict_on_start: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)

    def evict(self, namespace: str, job: str) -> None:
        """The node short of memory evicts the Job's running pod, as its kubelet does."""
        with self.lock:
            [pod] = [p for (ns, _), p in self.pods.items() if ns == namespace and p.job == job]
            assert pod.sandbox is not None, "the pod's container has not started"
            _evicted(pod)

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
                pod_status["containerStatuses"] = [_container_status(pod, waiting=waiting)]
                return
            environment = {
                variable["name"]: variable["value"] for variable in container.get("env", [])
            }
            for source in container.get("envFrom", []):
                secret = self.secrets.get((namespace, source["secretRef"]["name"]))
                if secret is None:
                    waiting = (
                        "CreateContainerConfigError",
                        f'secret "{source["secretRef"]["name"]}" not found',
                    )
                    pod_status["containerStatuses"] = [_container_status(pod, waiting=waiting)]
                    return
                environment.update(
                    {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
                )
            command = [*container["command"], *container.get("args", [])]
            pod.sandbox = SandboxJob(command, self.folder / pod.name, environment)
            if self.evict_on_start:
                self.evict_on_start -= 1
                _evicted(pod)
        if pod.sandbox is None or pod_status.get("reason") == "Evicted":
            return
        code = pod.sandbox.exit_code
        if code is None:
            pod_status.update(phase="Running", containerStatuses=[_container_status(pod)])
        else:
            ended = (code, "Completed" if code == 0 else "Error")
            pod_status.update(
                phase="Succeeded" if code == 0 else "Failed",
                containerStatuses=[_container_status(pod, terminated=ended)],
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
                conditions=_conditions(
                    "CompletionsReached", said, "SuccessCriteriaMet", "Complete"
                ),
            )
        elif counts["failed"] > job["spec"]["backoffLimit"]:
            said = "Job has reached the specified backoff limit"
            counts["conditions"] = _conditions(
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
            counts["conditions"] = _conditions("DeadlineExceeded", said, "FailureTarget", "Failed")
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
        policy = (query.get("propagationPolicy") or [""])[0] or (
            json.loads(body or b"{}").get("propagationPolicy") or "Orphan"  # batch/v1's default
        )
        if policy not in ("Orphan", "Background", "Foreground"):
            return status(400, "BadRequest", f'propagationPolicy "{policy}" is not supported')
        if self.jobs.pop((namespace, name), None) is None:
            return status(404, "NotFound", f'jobs.batch "{name}" not found')
        self.deleted.append(f"{namespace}/{name}")
        for key, pod in list(self.pods.items()):
            if key[0] == namespace and pod.job == name:
                if policy == "Orphan":  # the pod runs on, nobody's
                    pod.manifest["metadata"].pop("ownerReferences", None)
                else:  # the garbage collector deletes the pod: its container is killed
                    if pod.sandbox is not None:
                        pod.sandbox.stop()
                    del self.pods[key]
        return status(200, "", f'jobs.batch "{name}" deleted')

    def _list_pods(self, query: Mapping[str, list[str]], body: bytes, namespace: str) -> Answer:
        if refused := _unimplemented(query, "labelSelector"):
            return refused
        try:
            wanted = _selector((query.get("labelSelector") or [""])[0])
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
    if _NAME.fullmatch(name) and len(name) <= 63:
        return None
    return status(422, "Invalid", f'{kind} "{name}" is invalid: metadata.name: Invalid value')


def _evicted(pod: Pod) -> None:
    """What the kubelet of a node short of memory does to the pod: kills it, says why."""
    assert pod.sandbox is not None
    pod.sandbox.stop()
    said = "The node was low on resource: memory. Threshold quantity: 100Mi."
    pod.manifest["status"].update(
        phase="Failed",
        reason="Evicted",
        message=said,
        conditions=_conditions("TerminationByKubelet", said, "DisruptionTarget"),
        containerStatuses=[_container_status(pod, terminated=(137, "Error"))],
    )


def _conditions(reason: str, message: str, *kinds: str) -> list[dict[str, str]]:
    return [
        {
            "type": kind,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": now(),
        }
        for kind in kinds
    ]


def _container_status(
    pod: Pod, waiting: tuple[str, str] | None = None, terminated: tuple[int, str] | None = None
) -> dict[str, Any]:
    [container] = pod.manifest["spec"]["containers"]
    state: dict[str, Any] = {"running": {"startedAt": now()}}
    if waiting:
        state = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
    elif terminated:
        code, reason = terminated
        state = {"terminated": {"exitCode": code, "reason": reason, "finishedAt": now()}}
    running = "running" in state
    return {
        "name": container["name"],
        "image": container["image"],
        "imageID": "",
        "ready": running,
        "started": running,
        "restartCount": 0,
        "state": state,
    }


def _selector(text: str) -> list[Callable[[dict[str, str]], bool]]:
    """``k=v``, ``k==v``, ``k!=v``, ``k`` and ``!k`` requirements, as tests of labels."""
    return [_requirement(part.strip()) for part in text.split(",") if part.strip()]


def _requirement(text: str) -> Callable[[dict[str, str]], bool]:
    found = re.fullmatch(r"(!?)([\w./-]+)(?:\s*(==|=|!=)\s*([\w.-]*))?", text)
    if not found:
        raise ValueError(f"{text!r} (this fake knows =, ==, != and exists)")
    negated, key, operator, value = found.groups()

    def holds(labels: dict[str, str]) -> bool:
        if operator is None:
            return (key in labels) != bool(negated)
        return (labels.get(key) == value) != (operator == "!=")

    return holds


# -- what the API server refuses in a Job ----------------------------------------------------

_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_QUANTITY = re.compile(
    r"([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][-+]?[0-9]+)?"
)
_SCALE = {
    **dict(
        zip(
            ["", "n", "u", "m", "k", "M", "G", "T", "P", "E"],
            [1, 1e-9, 1e-6, 1e-3, 1e3, 1e6, 1e9, 1e12, 1e15, 1e18],
        )
    ),
    **{f"{unit}i": 2.0 ** (10 * (i + 1)) for i, unit in enumerate("KMGTPE")},
}
#: the fields this fake knows, by where they are; any other is an unknown field
_FIELDS = {
    "": {"apiVersion", "kind", "metadata", "spec"},
    "metadata": {"name", "namespace", "labels", "annotations"},
    "spec": {
        *"template backoffLimit activeDeadlineSeconds ttlSecondsAfterFinished".split(),
        "completions",
        "parallelism",
    },
    "spec.template": {"metadata", "spec"},
    "spec.template.metadata": {"labels", "annotations"},
    "spec.template.spec": {
        *"containers restartPolicy serviceAccountName nodeSelector".split(),
        "tolerations",
        "imagePullSecrets",
    },
    "container": {
        *"name image command args env envFrom resources imagePullPolicy workingDir".split()
    },
    "toleration": {"key", "operator", "value", "effect", "tolerationSeconds"},
}


def invalid_job(job: dict[str, Any]) -> Answer | None:
    """The API server's refusal of ``job``: 400 for an unknown field, 422 for a bad value."""
    name = str((job.get("metadata") or {}).get("name", ""))
    unknown, value = _unknown("", "", job), job
    for where in ("metadata", "spec", "spec.template", "spec.template.metadata"):
        value = job
        for key in where.split("."):
            value = value.get(key, {}) if isinstance(value, dict) else {}
        unknown += _unknown(where, where, value)
    if unknown:
        return status(400, "BadRequest", f"strict decoding error: {', '.join(unknown)}")
    spec, problems = job["spec"], []
    if not _NAME.fullmatch(name) or len(name) > 63:
        problems.append(f"metadata.name: Invalid value: {name!r}: a DNS-1123 label of at most 63")
    problems += _labels("metadata.labels", job["metadata"].get("labels", {}))
    template = spec.get("template", {})
    problems += _labels(
        "spec.template.metadata.labels", template.get("metadata", {}).get("labels", {})
    )
    least = {
        "backoffLimit": 0,
        "activeDeadlineSeconds": 1,
        "ttlSecondsAfterFinished": 0,
        "completions": 1,
        "parallelism": 1,
    }
    for key, smallest in least.items():
        given = spec.get(key, smallest)
        if not isinstance(given, int) or isinstance(given, bool) or given < smallest:
            problems.append(
                f"spec.{key}: Invalid value: {given!r}: must be an integer >= {smallest}"
            )
    problems += _pod_spec("spec.template.spec", template.get("spec", {}))
    if problems:
        return status(422, "Invalid", f'Job.batch "{name}" is invalid: {"; ".join(problems)}')
    return None


def _unknown(where: str, path: str, value: Any) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path or 'the body'}: expected an object"]
    return [
        f'unknown field "{path}.{key}"'.replace('".', '"')
        for key in value
        if key not in _FIELDS[where]
    ]


def _labels(path: str, labels: Any) -> list[str]:
    if not isinstance(labels, dict):
        return [f"{path}: expected an object of strings"]
    return [
        f"{path}: Invalid value: {key!r}={value!r}: not a valid label"
        for key, value in labels.items()
        if not (
            isinstance(value, str)
            and _LABEL_KEY.fullmatch(key)
            and _LABEL_VALUE.fullmatch(value)
            and len(value) <= 63
        )
    ]


def _amount(value: Any) -> float:
    """A quantity (``4``, ``500m``, ``16G``, ``8Gi``) as a number; ValueError if it is none."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    found = _QUANTITY.fullmatch(value) if isinstance(value, str) else None
    if not found:
        raise ValueError(value)
    number, suffix = float(found.group(1)), found.group(3) or ""
    if re.fullmatch(r"[eE][-+]?[0-9]+", suffix):
        return number * 10 ** int(suffix[1:])
    return number * _SCALE[suffix]


def _resources(path: str, resources: dict[str, Any]) -> list[str]:
    problems = [
        f"{path}: unknown field {key!r}" for key in resources if key not in ("requests", "limits")
    ]
    amounts: dict[str, dict[str, float]] = {"requests": {}, "limits": {}}
    for kind, found in amounts.items():
        for name, given in resources.get(kind, {}).items():
            try:
                found[name] = _amount(given)
            except ValueError:
                problems.append(
                    f"{path}.{kind}[{name}]: quantities must match the regular expression "
                    f"{_QUANTITY.pattern!r}, not {given!r}"
                )
    requests, limits = amounts["requests"], amounts["limits"]
    for name, amount in requests.items():
        if amount > limits.get(name, amount):
            problems.append(f"{path}.requests[{name}]: must be less than or equal to {name} limit")
    for name, amount in limits.items():  # an extended resource (a GPU): whole, requested as limited
        if "/" in name and (amount != int(amount) or requests.get(name, amount) != amount):
            problems.append(f"{path}.limits[{name}]: must be a whole number equal to its request")
    return problems


def _container(path: str, container: dict[str, Any]) -> list[str]:
    problems = _unknown("container", path, container)
    if not _NAME.fullmatch(str(container.get("name", ""))):
        problems.append(f"{path}.name: Required value: a DNS-1123 label")
    if not isinstance(container.get("image"), str) or not container["image"].strip():
        problems.append(f"{path}.image: Required value")
    for key in ("command", "args"):
        if not all(isinstance(word, str) for word in container.get(key, [])):
            problems.append(f"{path}.{key}: expected a list of strings")
    for i, variable in enumerate(container.get("env", [])):
        if set(variable) - {"name", "value"} or not isinstance(variable.get("value", ""), str):
            problems.append(f"{path}.env[{i}]: this fake knows a name and a string value")
    for i, source in enumerate(container.get("envFrom", [])):
        if set(source) != {"secretRef"} or not _NAME.fullmatch(
            str(source["secretRef"].get("name"))
        ):
            problems.append(f"{path}.envFrom[{i}]: this fake knows a secretRef with a name")
    if container.get("imagePullPolicy", "IfNotPresent") not in ("Always", "Never", "IfNotPresent"):
        problems.append(f"{path}.imagePullPolicy: Unsupported value")
    return problems + _resources(f"{path}.resources", container.get("resources", {}))


def _pod_spec(path: str, spec: dict[str, Any]) -> list[str]:
    problems = _unknown("spec.template.spec", path, spec)
    if spec.get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append(f'{path}.restartPolicy: Required value: valid values: "OnFailure", "Never"')
    containers = spec.get("containers")
    if not isinstance(containers, list) or len(containers) != 1:
        return [*problems, f"{path}.containers: this fake runs exactly one container"]
    problems += _container(f"{path}.containers[0]", containers[0])
    problems += _labels(f"{path}.nodeSelector", spec.get("nodeSelector", {}))
    if not _NAME.fullmatch(spec.get("serviceAccountName", "default")):
        problems.append(f"{path}.serviceAccountName: Invalid value")
    for i, toleration in enumerate(spec.get("tolerations", [])):
        where = f"{path}.tolerations[{i}]"
        problems += _unknown("toleration", where, toleration)
        if toleration.get("operator", "Equal") not in ("Equal", "Exists"):
            problems.append(f"{where}.operator: Unsupported value")
        if toleration.get("operator") == "Exists" and toleration.get("value"):
            problems.append(
                f"{where}.operator: Invalid value: value must be empty when `operator` is 'Exists'"
            )
        if toleration.get("effect", "") not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            problems.append(f"{where}.effect: Unsupported value")
        if not _LABEL_KEY.fullmatch(str(toleration.get("key", ""))):
            problems.append(f"{where}.key: Invalid value")
    for i, secret in enumerate(spec.get("imagePullSecrets", [])):
        if set(secret) != {"name"} or not _NAME.fullmatch(str(secret["name"])):
            problems.append(f"{path}.imagePullSecrets[{i}]: a name")
    return problems
