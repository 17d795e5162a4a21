"""Vertex AI: a step as a custom job, its log from Cloud Logging, its secrets from Secret Manager.

The job is created through Google's client library (``aiplatform_v1``, REST
transport) with Application Default Credentials; it runs as
``--service-account``, which reads ``--store-secret`` from Secret Manager when
the job starts. Its log is Cloud Logging's ``ml_job`` entries of the job.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from ..errors import StackmagicError
from ..flavors.step_operators import VertexStepOperator
from ..google_secrets import read_latest_version, secret_resource
from .base import (
    ENDED,
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
from .machines import Machine, choose

RUN_LABEL, STEP_LABEL, TRY_LABEL = "stackmagic-run", "stackmagic-step", "stackmagic-try"
_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
SIGN_IN = (
    "sign in with `gcloud auth application-default login`, or set "
    "GOOGLE_APPLICATION_CREDENTIALS to a service account key"
)

#: Machine types for custom training without GPUs, cheapest first (Vertex AI's hourly prices).
CPU_MACHINES = tuple(
    Machine(name, cpus, memory)
    for name, cpus, memory in [
        ("n1-highmem-2", 2, 13),
        ("e2-standard-4", 4, 16),
        ("n1-standard-4", 4, 15),
        ("n1-highmem-4", 4, 26),
        ("e2-standard-8", 8, 32),
        ("n1-standard-8", 8, 30),
        ("n1-highmem-8", 8, 52),
        ("e2-standard-16", 16, 64),
        ("n1-standard-16", 16, 60),
        ("n1-highmem-16", 16, 104),
        ("e2-standard-32", 32, 128),
        ("n1-standard-32", 32, 120),
        ("n1-highmem-32", 32, 208),
        ("n1-standard-64", 64, 240),
        ("n1-highmem-64", 64, 416),
        ("n1-standard-96", 96, 360),
        ("n1-highmem-96", 96, 624),
    ]
)
#: Machine types that come with their GPUs (A100 on A2, L4 on G2), cheapest first.
GPU_MACHINES = {
    "NVIDIA_TESLA_A100": tuple(
        Machine(f"a2-highgpu-{gpus}g", 12 * gpus, 85 * gpus, gpus) for gpus in (1, 2, 4, 8)
    )
    + (Machine("a2-megagpu-16g", 96, 1360, 16),),
    "NVIDIA_L4": tuple(
        Machine(f"g2-standard-{cpus}", cpus, 4 * cpus, gpus)
        for cpus, gpus in [(4, 1), (8, 1), (12, 1), (16, 1), (32, 1), (24, 2), (48, 4), (96, 8)]
    ),
}
#: GPUs an N1 machine takes: how many of them, and the most vCPUs the machine may have with that many.
N1_GPUS = {
    "NVIDIA_TESLA_T4": {1: 48, 2: 48, 4: 96},
    "NVIDIA_TESLA_P4": {1: 24, 2: 48, 4: 96},
    "NVIDIA_TESLA_P100": {1: 16, 2: 32, 4: 96},
    "NVIDIA_TESLA_V100": {1: 12, 2: 24, 4: 48, 8: 96},
}
_STATES = {
    "JOB_STATE_QUEUED": PENDING,
    "JOB_STATE_PENDING": PENDING,
    "JOB_STATE_PAUSED": PENDING,
    "JOB_STATE_RUNNING": RUNNING,
    "JOB_STATE_UPDATING": RUNNING,
    "JOB_STATE_SUCCEEDED": SUCCEEDED,
    "JOB_STATE_FAILED": FAILED,
    "JOB_STATE_EXPIRED": FAILED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": FAILED,
    "JOB_STATE_CANCELLING": STOPPED,
    "JOB_STATE_CANCELLED": STOPPED,
}
#: the start of the REST transport's error messages: the request (``POST URL: ``)
_REQUEST = re.compile(r"^[A-Z]+ \S+: ")
#: how Vertex AI says a Spot VM was taken back, or none was to be had
_PREEMPTED = re.compile(r"preempt|spot\b.*\bcapacity|stockout", re.IGNORECASE)


def gpu_catalog(accelerator: str, gpus: int) -> tuple[Machine, ...]:
    """The machine types a step asking for ``gpus`` GPUs of type ``accelerator`` can have;
    those that cannot carry them say 0 GPUs."""
    if not gpus:
        return CPU_MACHINES
    if accelerator in GPU_MACHINES:
        return CPU_MACHINES + GPU_MACHINES[accelerator]
    limits = N1_GPUS[accelerator]
    catalog = []
    for machine in CPU_MACHINES:
        counts = [n for n, most in sorted(limits.items()) if n >= gpus and machine.cpus <= most]
        attachable = machine.name.startswith("n1-") and counts
        catalog.append(
            Machine(machine.name, machine.cpus, machine.memory_gib, counts[0] if attachable else 0)
        )
    return tuple(catalog)


def label(text: str) -> str:
    """``text`` as a label value may be: lower case letters, digits, ``_`` and ``-``, 63 at most."""
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower())[:63]


def console_url(name: str) -> str:
    """The job's page in the Google Cloud console, from ``projects/P/locations/L/customJobs/ID``."""
    _, project, _, region, _, job_id = name.split("/")
    return (
        f"https://console.cloud.google.com/vertex-ai/locations/{region}/training/{job_id}/cpu"
        f"?project={project}"
    )


def explained(action: str, error: Exception, hint: str) -> StackmagicError:
    """One line for a failed call: what failed, Google's words, what to do."""
    code, message = getattr(error, "code", None), getattr(error, "message", None)
    if code and message:
        said = f"{code} {_REQUEST.sub('', message)}"
    else:
        said = f"{type(error).__name__}: {error}"
    return StackmagicError(f"cannot {action}: {said.rstrip('.')}; {hint}")


class Vertex(StepOperator[VertexStepOperator]):
    """One project's region of Vertex AI, as the step operator uses it."""

    flavor = "vertex"
    secret_manager = "Secret Manager"

    def secret_location(self) -> dict[str, Any]:
        if not self.config.store_secret:
            return {}
        return {
            "name": secret_resource(self.config.store_secret, self.config.project),
            "endpoint": self.config.secret_manager_endpoint,
        }

    def machine_spec(self, resources: Resources, step: str) -> dict[str, Any]:
        """The machine type (and accelerators) for the step's --cpu, --memory and --gpu."""
        accelerator = self.config.accelerator_type
        catalog = gpu_catalog(accelerator, resources.gpu)
        chosen = choose(
            catalog, resources, self.config.machine_type, step=step, option="--machine-type"
        )
        spec: dict[str, Any] = {"machineType": chosen}
        if resources.gpu:
            known = {machine.name: machine.gpus for machine in catalog}
            spec.update(
                acceleratorType=accelerator, acceleratorCount=known.get(chosen) or resources.gpu
            )
        return spec

    def request(
        self, job: OperatorJob, resources: Resources, *, look_up: bool = True
    ) -> dict[str, Any]:
        """The CustomJob, as Vertex AI's REST API takes it."""
        config = self.config
        spec: dict[str, Any] = {
            "workerPoolSpecs": [
                {
                    "machineSpec": self.machine_spec(resources, job.step),
                    "replicaCount": 1,
                    "containerSpec": {
                        "imageUri": resources.image,
                        "command": job.command(),
                        # the log reaches Cloud Logging as it is written, not when the step ends
                        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
                    },
                }
            ],
            "scheduling": {
                "timeout": f"{config.max_runtime}s",
                **({"strategy": "SPOT"} if config.spot else {}),
            },
        }
        if config.service_account:
            spec["serviceAccount"] = config.service_account
        if config.network:
            spec["network"] = config.network
        if config.staging_bucket:
            spec["baseOutputDirectory"] = {
                "outputUriPrefix": f"{config.staging_bucket.rstrip('/')}/{job.name()}"
            }
        return {
            "displayName": job.name(),
            "labels": {
                RUN_LABEL: label(job.run_id),
                STEP_LABEL: label(job.step),
                TRY_LABEL: str(job.attempt),
            },
            "jobSpec": spec,
        }

    @functools.cached_property
    def _jobs(self) -> Any:
        """Vertex AI's job service, over REST (one client for every call of a run)."""
        from google.cloud.aiplatform_v1 import JobServiceClient

        endpoint = self.config.api_endpoint or f"{self.config.region}-aiplatform.googleapis.com"
        try:
            return JobServiceClient(transport="rest", client_options={"api_endpoint": endpoint})
        except Exception as error:
            raise explained("reach Vertex AI", error, SIGN_IN) from None

    @functools.cached_property
    def _logging(self) -> Any:
        """A session for Cloud Logging: its token is kept while it is good, not asked per poll."""
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        try:
            return AuthorizedSession(google.auth.default(scopes=_SCOPES)[0])
        except Exception as error:
            raise explained("reach Cloud Logging", error, SIGN_IN) from None

    def submit(self, job: OperatorJob, request: dict[str, Any]) -> tuple[str, str]:
        from google.cloud.aiplatform_v1 import CustomJob

        parent, jobs = f"projects/{self.config.project}/locations/{self.config.region}", self._jobs
        try:
            created = jobs.create_custom_job(
                parent=parent, custom_job=CustomJob.from_json(json.dumps(request))
            )
        except Exception as error:
            raise explained(
                f"submit the Vertex AI custom job {request['displayName']}",
                error,
                "check --project, --region, --image and --service-account",
            ) from None
        return created.name, console_url(created.name)

    def state(self, job_id: str) -> JobState:
        jobs = self._jobs
        try:
            found = jobs.get_custom_job(name=job_id)
        except Exception as error:
            raise explained(
                f"look up the Vertex AI custom job {job_id}", error, "check --project and --region"
            ) from None
        reason = found.error.message
        phase = _STATES.get(found.state.name, PENDING)
        interrupted = phase == FAILED and bool(_PREEMPTED.search(reason))
        return JobState(phase, reason, interrupted)

    def logs(self, job_id: str, cursor: Any) -> tuple[list[str], Any]:
        """Cloud Logging's entries of the job, oldest first, from the newest timestamp seen on;
        the cursor is that timestamp and the entries already read at it."""
        from google.api_core.exceptions import from_http_response

        after, seen = (cursor or {}).get("timestamp", ""), set((cursor or {}).get("seen", []))
        filters = ['resource.type="ml_job"', f'resource.labels.job_id="{job_id.split("/")[-1]}"']
        if after:
            filters.append(f'timestamp>="{after}"')
        body: dict[str, Any] = {
            "resourceNames": [f"projects/{self.config.project}"],
            "filter": " AND ".join(filters),
            "orderBy": "timestamp asc",
            "pageSize": 1000,
        }
        url = f"{self.config.logging_endpoint.rstrip('/')}/v2/entries:list"
        lines: list[str] = []
        session = self._logging
        try:
            while True:
                answer = session.post(url, json=body, timeout=30)
                if answer.status_code == 429:  # a project's reads a minute are few: lines wait
                    break
                if answer.status_code != 200:
                    raise from_http_response(answer)
                page = answer.json()
                for entry in page.get("entries", []):
                    if entry["timestamp"] == after and entry["insertId"] in seen:
                        continue
                    if entry["timestamp"] != after:
                        after, seen = entry["timestamp"], set()
                    seen.add(entry["insertId"])
                    lines.extend(_text(entry).splitlines())
                if not page.get("nextPageToken"):
                    break
                body["pageToken"] = page["nextPageToken"]
        except Exception as error:
            raise explained(
                f"read the log of the Vertex AI custom job {job_id} from Cloud Logging",
                error,
                "grant the identity following the run roles/logging.viewer",
            ) from None
        return lines, {"timestamp": after, "seen": sorted(seen)}

    def stop(self, job_id: str) -> None:
        jobs = self._jobs
        try:
            jobs.cancel_custom_job(name=job_id)
        except Exception as error:
            if self.state(job_id).phase in ENDED:
                return  # it ended before it was asked to: nothing to stop
            raise explained(
                f"cancel the Vertex AI custom job {job_id}",
                error,
                f"cancel it in the console: {console_url(job_id)}",
            ) from None

    @staticmethod
    def read_secret(location: Mapping[str, Any]) -> str:
        return read_latest_version(location["name"], location.get("endpoint", ""))


def _text(entry: Mapping[str, Any]) -> str:
    """What a log entry says: a container's line, or Vertex AI's own message."""
    payload = entry.get("jsonPayload") or {}
    return str(entry.get("textPayload") or payload.get("message") or "").rstrip("\n")


BACKEND = Vertex
