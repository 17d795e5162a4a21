"""The FAKE Kubernetes API server's stand-in kubelet and job controller: a pod, what
happens to it, and what its Job's failure policy makes of a failed one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fake_kubernetes_manifests import FIELD_PATH, now
from job_sandbox import SandboxJob


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


def in_cluster_config(folder: Path, url: str, token: str) -> Path:
    """What a pod's service account gives it: the API server and a token, as a kubeconfig."""
    path = folder / "in-cluster-kubeconfig"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        cluster = {"name": "in-cluster", "cluster": {"server": url}}
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [cluster],
                    "users": [{"name": "pod", "user": {"token": token}}],
                    "contexts": [
                        {"name": "pod", "context": {"cluster": "in-cluster", "user": "pod"}}
                    ],
                    "current-context": "pod",
                }
            )
        )
    return path


def field_value(variable: dict[str, Any], pod: dict[str, Any]) -> str:
    """A container variable's value: given, or the pod's own field (the downward API)."""
    if "valueFrom" not in variable:
        return str(variable.get("value", ""))
    found = FIELD_PATH.fullmatch(variable["valueFrom"]["fieldRef"]["fieldPath"])
    assert found is not None  # validated when the Job was created
    if found.group(2):
        return str(pod["metadata"]["labels"].get(found.group(2), ""))
    return str(pod["metadata"][found.group(1)])


def fail_job(job: dict[str, Any], pods: list[Pod]) -> str:
    """Why a failed pod fails its Job at once under the Job's podFailurePolicy, or ``""``: the
    first rule a failed pod matches decides (Count and Ignore leave it to backoffLimit)."""
    rules = job["spec"].get("podFailurePolicy", {}).get("rules", [])
    for pod in pods:
        pod_status = pod.manifest["status"]
        if pod_status["phase"] != "Failed":
            continue
        held = {(c["type"], c["status"]) for c in pod_status.get("conditions", [])}
        code = pod.sandbox.exit_code if pod.sandbox is not None else None
        for rule in rules:
            codes = rule.get("onExitCodes")
            if codes is not None:
                matched = code is not None and (code in codes["values"]) == (
                    codes["operator"] == "In"
                )
            else:
                matched = any(
                    (c["type"], c.get("status", "True")) in held for c in rule["onPodConditions"]
                )
            if matched:
                if rule["action"] == "FailJob":
                    return f"Container {pod.name} failed with exit code {code}"
                break
    return ""


def evicted(pod: Pod) -> None:
    """What the kubelet of a node short of memory does to the pod: kills it, says why."""
    assert pod.sandbox is not None
    pod.sandbox.stop()
    said = "The node was low on resource: memory. Threshold quantity: 100Mi."
    pod.manifest["status"].update(
        phase="Failed",
        reason="Evicted",
        message=said,
        conditions=conditions("TerminationByKubelet", said, "DisruptionTarget"),
        containerStatuses=[container_status(pod, terminated=(137, "Error"))],
    )


def conditions(reason: str, message: str, *kinds: str) -> list[dict[str, str]]:
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


def container_status(
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
