"""A step as a Kubernetes Job: one Job per try, its pod running the step's command.

Kubernetes retries nothing here (``backoffLimit: 0``): a try that fails is
stackmagic's to retry under ``--retries``, with a new Job. The stores' secrets
reach the pod as its environment, from the Secret ``--store-secret`` names
(``envFrom``); no secret value is ever part of the Job.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import StackmagicError
from ..flavors.step_operators import KubernetesStepOperator
from .base import (
    FAILED,
    PENDING,
    RUNNING,
    STOPPED,
    SUCCEEDED,
    JobState,
    OperatorJob,
    Resources,
    StepOperator,
)
from .kubernetes_api import asked, given, job_parts, label_value, placement, quantity

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, V1Job, V1Pod

#: the container of the step's pod
CONTAINER = "step"
#: a pod waiting with one of these will not start by itself: the image or its Secret is wrong
_STUCK = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"}
#: a failed pod's reason when the node took it back, not the step
_TAKEN_BACK = {"Evicted", "Preempting", "NodeShutdown", "Terminated"}


class Kubernetes(StepOperator[KubernetesStepOperator]):
    flavor = "kubernetes"
    secret_manager = "a Kubernetes Secret"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: ApiClient | None = None
        #: jobs whose pod was seen stuck (image, Secret) at the last look
        self._stuck: set[str] = set()
        #: jobs this backend gave up on (and deleted): their verdict stays
        self._given_up: dict[str, JobState] = {}

    # -- the Job ---------------------------------------------------------------------------

    def secret_location(self) -> dict[str, Any]:
        return {}  # the pod gets the Secret as its environment

    def request(
        self, job: OperatorJob, resources: Resources, *, look_up: bool = True
    ) -> dict[str, Any]:
        config = self.config
        labels = {
            "stackmagic-run": label_value(job.run_id),
            "stackmagic-step": label_value(job.step),
            "stackmagic-try": str(job.attempt),
        }
        amounts = given(cpu=resources.cpu_text, memory=quantity(resources.memory_text))
        gpus = {config.gpu_resource: str(resources.gpu)} if resources.gpu else {}
        # the pod reads the stores' secrets from the Secret: never a value here
        secret = [{"secretRef": {"name": config.store_secret}}] if config.store_secret else []
        container: dict[str, Any] = {
            "name": CONTAINER,
            "image": resources.image,
            "imagePullPolicy": config.image_pull_policy,
            "command": job.command(),
            # its lines reach the log as they are printed, not when a buffer fills
            "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
            "resources": {"requests": amounts, "limits": {**amounts, **gpus}},
            **given(envFrom=secret),
        }
        pod = {"restartPolicy": "Never", "containers": [container], **placement(config)}
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": job.name(), "namespace": config.namespace, "labels": labels},
            "spec": {
                "backoffLimit": 0,  # stackmagic retries, with a new Job
                "activeDeadlineSeconds": config.max_runtime,
                "ttlSecondsAfterFinished": config.ttl_seconds_after_finished,
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        }

    def submit(self, job: OperatorJob, request: dict[str, Any]) -> tuple[str, str]:
        return self.submit_manifest(request)

    def submit_manifest(self, request: dict[str, Any]) -> tuple[str, str]:
        """The Job's id is ``NAMESPACE/NAME``; its link is the Job in the API server (a cluster
        has no console every team shares): ``kubectl get job`` shows the same."""
        from kubernetes.client import BatchV1Api

        namespace, name = request["metadata"]["namespace"], request["metadata"]["name"]
        client = self.api()
        asked(
            f"cannot create the Kubernetes Job {namespace}/{name}",
            BatchV1Api(client).create_namespaced_job,
            namespace,
            request,
        )
        return f"{namespace}/{name}", self.batch_url("jobs", namespace, name)

    def batch_url(self, kind: str, namespace: str, name: str) -> str:
        """A Job's or CronJob's address on the API server (``kind``: jobs, cronjobs)."""
        host = self.api().configuration.host.rstrip("/")
        return f"{host}/apis/batch/v1/namespaces/{namespace}/{kind}/{name}"

    # -- following it ----------------------------------------------------------------------

    def state(self, job_id: str) -> JobState:
        """The Job's state, and its pod's where the Job does not tell: a pod whose image or
        Secret is wrong waits for ever, so one seen stuck at two looks in a row fails (and
        its Job is deleted); a pod the node took back is an interruption."""
        if job_id in self._given_up:
            return self._given_up[job_id]
        found = self.read_job(job_id)
        if found is None:
            return JobState(STOPPED, "the Job was deleted")
        pod = self._pod(found)
        status = found.status
        done = {c.type: c for c in status.conditions or [] if c.status == "True"}
        phase = pod.status.phase if pod is not None else None
        taken_back = _taken_back(pod)
        if taken_back and (phase == "Failed" or "Failed" in done):
            return JobState(FAILED, taken_back, interrupted=True)
        if "Complete" in done or status.succeeded or phase == "Succeeded":
            return JobState(SUCCEEDED)
        if "Failed" in done or status.failed or phase == "Failed":
            return JobState(FAILED, _failure(done.get("Failed"), pod))
        stuck = _waiting(pod)
        if stuck and job_id in self._stuck:
            self.stop(job_id)
            self._given_up[job_id] = JobState(FAILED, stuck)
            return self._given_up[job_id]
        self._stuck.discard(job_id)
        if stuck:
            self._stuck.add(job_id)
        return JobState(RUNNING if phase == "Running" else PENDING)

    def logs(self, job_id: str, cursor: Any) -> tuple[list[str], Any]:
        """The pod's log past the ``cursor`` lines already shown. Asked with timestamps: a
        log then never reads as JSON, which the client would turn into a Python object."""
        from kubernetes.client import CoreV1Api

        seen: int = cursor or 0
        found = self.read_job(job_id)
        pod = self._pod(found) if found is not None else None
        if pod is None or pod.status.phase == "Pending":
            return [], seen
        text = asked(
            f"cannot read the log of the Kubernetes Job {job_id}",
            CoreV1Api(self.api()).read_namespaced_pod_log,
            pod.metadata.name,
            pod.metadata.namespace,
            container=pod.spec.containers[0].name,
            timestamps=True,
            gone=(400, 404),  # its container has not started yet, or the pod is gone
        )
        pieces = (text or "").split("\n")
        if pod.status.phase == "Running":
            pieces.pop()  # a line still being written (or "" after the last newline)
        lines = [piece.partition(" ")[2] for piece in pieces if piece]
        return lines[seen:], max(seen, len(lines))

    def stop(self, job_id: str) -> None:
        """Delete the Job and, in the background, its pod (a Job deleted through the API
        leaves its pods running unless told otherwise); one gone already is left so."""
        from kubernetes.client import BatchV1Api

        namespace, name = job_parts(job_id)
        asked(
            f"cannot delete the Kubernetes Job {job_id}",
            BatchV1Api(self.api()).delete_namespaced_job,
            name,
            namespace,
            propagation_policy="Background",
            gone=(404,),
        )

    def delete_jobs(self, namespace: str, label_selector: str) -> None:
        """Delete the Jobs the labels pick, and their pods in the background."""
        from kubernetes.client import BatchV1Api

        asked(
            f"cannot delete the Kubernetes Jobs labelled {label_selector} in {namespace}",
            BatchV1Api(self.api()).delete_collection_namespaced_job,
            namespace,
            label_selector=label_selector,
            propagation_policy="Background",
        )

    @staticmethod
    def read_secret(location: Mapping[str, Any]) -> str:
        raise StackmagicError(
            "a Kubernetes job gets the stores' secrets as its environment (the Secret "
            "--store-secret names) and reads none itself; start the run again with the "
            "stackmagic that wrote the job's image"
        )

    # -- the cluster -----------------------------------------------------------------------

    def api(self) -> ApiClient:
        """The client of --kubeconfig/--context, else $KUBECONFIG or ~/.kube/config, else
        the pod's own service account (stackmagic running in the cluster)."""
        if self._client is not None:
            return self._client
        from kubernetes import config as kubeconfig
        from kubernetes.client import ApiClient, Configuration

        path = self.config.kubeconfig or os.environ.get("KUBECONFIG", "")  # KUBECONFIG: a list
        if not path and os.path.exists(os.path.expanduser("~/.kube/config")):
            path = os.path.expanduser("~/.kube/config")
        try:
            if path:
                self._client = kubeconfig.new_client_from_config(
                    path, self.config.context or None, persist_config=False
                )
            else:
                configuration = Configuration()
                kubeconfig.load_incluster_config(configuration)
                self._client = ApiClient(configuration)
        except (kubeconfig.ConfigException, OSError) as error:
            where = f"the kubeconfig {path}" if path else "the pod's service account"
            raise StackmagicError(
                f"cannot use {where} to reach Kubernetes ({str(error).strip()}); give a "
                "kubeconfig with --kubeconfig (and --context)"
            ) from None
        return self._client

    def read_job(self, job_id: str) -> V1Job | None:
        from kubernetes.client import BatchV1Api

        namespace, name = job_parts(job_id)
        found: V1Job | None = asked(
            f"cannot read the Kubernetes Job {job_id}",
            BatchV1Api(self.api()).read_namespaced_job,
            name,
            namespace,
            gone=(404,),
        )
        return found

    def _pod(self, job: V1Job) -> V1Pod | None:
        """The Job's newest pod (by its selector, so never one of an older Job of that name)."""
        from kubernetes.client import CoreV1Api

        labels = job.spec.selector.match_labels
        pods = asked(
            f"cannot list the pods of the Kubernetes Job {job.metadata.name}",
            CoreV1Api(self.api()).list_namespaced_pod,
            job.metadata.namespace,
            label_selector=",".join(f"{key}={value}" for key, value in sorted(labels.items())),
        )
        ordered = sorted(pods.items, key=lambda pod: pod.metadata.creation_timestamp)
        return ordered[-1] if ordered else None


def _taken_back(pod: V1Pod | None) -> str:
    """Why the node took the pod back (eviction, preemption, shutdown), or ``""``."""
    if pod is None:
        return ""
    if pod.status.reason in _TAKEN_BACK:
        return f"{pod.status.reason}: {pod.status.message or 'the node took the pod back'}"
    for condition in pod.status.conditions or []:
        if condition.type == "DisruptionTarget" and condition.status == "True":
            return f"{condition.reason}: {condition.message}"
    return ""


def _containers(pod: V1Pod | None) -> list[Any]:
    """The states of the pod's containers (none before it is scheduled)."""
    if pod is None:
        return []
    return [status.state for status in pod.status.container_statuses or [] if status.state]


def _waiting(pod: V1Pod | None) -> str:
    """Why the pod's container waits and will not start by itself, or ``""``."""
    for state in _containers(pod):
        if state.waiting is not None and state.waiting.reason in _STUCK:
            return f"{state.waiting.reason}: {state.waiting.message}"
    return ""


def _failure(condition: Any, pod: V1Pod | None) -> str:
    """The container's end (``OOMKilled (exit code 137)``), else the Job's condition."""
    ended = [state.terminated for state in _containers(pod) if state.terminated]
    if ended and not (condition and condition.reason == "DeadlineExceeded"):
        words = f"{ended[0].reason or 'Error'} (exit code {ended[0].exit_code})"
        return f"{words}: {ended[0].message}" if ended[0].message else words
    if condition is not None:
        return f"{condition.reason}: {condition.message}"
    return "the Job failed"


BACKEND = Kubernetes
