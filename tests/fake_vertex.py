"""A FAKE Google Cloud for the Vertex AI step operator: Vertex AI custom jobs, Cloud Logging,
Secret Manager and an OAuth token endpoint, for tests (none of them can run here).

It answers the REST calls the real ``google-cloud-aiplatform`` client
(``JobServiceClient``, REST transport) and ``google-auth`` make: create, get
and cancel a custom job of one project's region, list its log entries, read
a secret's latest version, and give a token for a service account's signed
assertion. Every request is recorded, headers and body, for tests to search.

It is as strict as the services on what it is sent: a custom job is checked
field by field (worker pools, known machine types, accelerators their
family takes, a container image, labels, ``"123s"`` durations), log filters
are parsed (an unknown term is refused), and a secret is given only to an
identity allowed to read it. A created job runs its container's command in
tests/job_sandbox.py, as the job's service account (a key file whose token
comes from here) with the S3 emulator's testing keys; its state follows the
sandbox's and its output lines are its log entries. Tests make a job fail
before it runs (an image that cannot be pulled) or be preempted.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs

from fake_http import Request
from google.cloud.aiplatform_v1 import AcceleratorType, CustomJob, JobState, Scheduling
from job_sandbox import SandboxJob

JOBS = "/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/customJobs"
SECRET = "/v1/(?P<secret>projects/[^/]+/secrets/[^/]+)/versions/latest:access"
_ROUTES = [
    ("POST", JOBS, "_create"),
    ("GET", JOBS + "/(?P<job_id>[0-9]+)", "_get"),
    ("POST", JOBS + "/(?P<job_id>[0-9]+):cancel", "_cancel"),
    ("POST", "/v2/entries:list", "_entries"),
    ("GET", SECRET, "_secret"),
]
ENDED = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")
Answer = tuple[int, dict[str, Any]]
#: the identity a custom job runs as when its request names none (Vertex AI's service agent)
DEFAULT_JOB_IDENTITY = "service-123456789@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"
PREEMPTED = (
    "The replica workerpool0-0 was preempted: Spot VM capacity was reclaimed by Compute Engine."
)


def _now() -> str:
    """An RFC 3339 timestamp with nanoseconds, as Google's APIs write them."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


@dataclass
class FakeJob:
    body: dict[str, Any]
    sandbox: SandboxJob | None
    #: the error it ends with whatever its container does (an image not pulled, a preemption)
    failure: str = ""
    cancelled: bool = False
    entries: list[dict[str, Any]] = field(default_factory=list)
    lines_logged: int = 0


@dataclass
class FakeVertex:
    project: str
    region: str
    #: where each job's sandbox folder goes
    folder: Path
    #: a service-account key file; each job gets a copy naming its own account
    key_file: Path
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # "projects/P/secrets/S" -> text
    #: who may read the secrets (roles/secretmanager.secretAccessor)
    secret_readers: set[str] = field(default_factory=set)
    #: images whose pull fails: their jobs fail before they run
    unpullable: set[str] = field(default_factory=set)
    #: how many of the next jobs are preempted as soon as they start
    preempt: int = 0
    #: how many of the next log reads are over the project's quota of reads a minute
    over_read_quota: int = 0
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> service account
    #: what it answers, beside the OAuth token endpoint: (method, path pattern, handler)
    routes: ClassVar[list[tuple[str, str, str]]] = _ROUTES
    #: one request at a time: the driver, a canceller and a job's own calls come together
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Answer:
        if (method, path) == ("POST", "/token"):
            return self._token(body)
        identity = self._identity(headers.get("authorization", ""))
        if identity is None:
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        numbers = "enum-encoding=int" in "".join(query.get("$alt", []))
        for verb, pattern, route in self.routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                try:
                    payload = json.loads(body) if body else {}
                except ValueError:
                    return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
                with self._lock:
                    answer: Answer = getattr(self, route)(
                        payload=payload, identity=identity, query=query, **match.groupdict()
                    )
                return answer[0], _encoded(answer[1], numbers)
        return _error(404, "NOT_FOUND", f"no route {method} {path} in the fake Google Cloud")

    # -- OAuth ------------------------------------------------------------------------------

    def _token(self, body: bytes) -> Answer:
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return 400, {"error": "unsupported_grant_type"}
        claims = _claims(form.get("assertion", ""))
        # google-auth signs for Google's token endpoint, whatever the key file's token_uri says
        if claims.get("aud") != "https://oauth2.googleapis.com/token" or not claims.get("iss"):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT audience."}
        token = f"ya29.fake-{uuid.uuid4().hex}"
        self.tokens[token] = claims["iss"]
        return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}

    def _identity(self, authorization: str) -> str | None:
        """The service account a bearer token is for: one given here, or a self-signed JWT."""
        token = authorization.removeprefix("Bearer ")
        if token == authorization:
            return None
        identity: str | None = self.tokens.get(token) or _claims(token).get("iss")
        return identity

    # -- Vertex AI --------------------------------------------------------------------------

    def _create(self, project: str, location: str, payload: Any, identity: str, **_: Any) -> Any:
        wrong = self._wrong_place(project, location)
        if wrong:
            return wrong
        refusal = custom_job_refusal(payload)
        if refusal:
            return _error(400, "INVALID_ARGUMENT", refusal)
        payload = _encoded(payload, numbers=False)
        job_id = str(uuid.uuid4().int)[:19]
        name = f"projects/{project}/locations/{location}/customJobs/{job_id}"
        spec = payload["jobSpec"]
        pool = spec["workerPoolSpecs"][0]
        for pool_spec in spec["workerPoolSpecs"]:
            pool_spec["replicaCount"] = str(pool_spec["replicaCount"])
            pool_spec.setdefault("diskSpec", {"bootDiskType": "pd-ssd", "bootDiskSizeGb": 100})
        created = _now()
        body = {**payload, "name": name, "state": "JOB_STATE_PENDING", "createTime": created}
        body["updateTime"] = created
        image = pool["containerSpec"]["imageUri"]
        job = FakeJob(body, sandbox=None)
        if image in self.unpullable:
            job.failure = (
                f"Unable to pull image {image}: the image does not exist or the job's service "
                "account cannot read it. Check the image URI and grant the service account "
                "roles/artifactregistry.reader."
            )
        else:
            job.sandbox = self._start(job_id, pool["containerSpec"], spec.get("serviceAccount"))
            if self.preempt:
                self.preempt -= 1
                job.failure = PREEMPTED
                job.sandbox.stop()
        self.jobs[job_id] = job
        self._log(job, {"message": "Waiting for job to be provisioned."})
        return 200, body

    def _start(self, job_id: str, container: dict[str, Any], account: str | None) -> SandboxJob:
        """The container's command, as the job's service account."""
        folder = self.folder / job_id
        folder.mkdir(parents=True)
        environment = {item["name"]: item["value"] for item in container.get("env", [])}
        environment["GOOGLE_APPLICATION_CREDENTIALS"] = str(self.identity(folder, account))
        return SandboxJob(
            [*container.get("command", []), *container.get("args", [])],
            folder / "work",
            environment,
        )

    def identity(self, folder: Path, account: str | None) -> Path:
        """A key file for ``account`` (the service agent when None) whose tokens come from here:
        what a job's container is given as its identity."""
        key = json.loads(self.key_file.read_text())
        key.update(client_email=account or DEFAULT_JOB_IDENTITY, token_uri=f"{self.url}/token")
        credentials = folder / "job-identity.json"
        credentials.write_text(json.dumps(key))
        return credentials

    def _wrong_place(self, project: str, location: str) -> Answer | None:
        where = f"'//aiplatform.googleapis.com/projects/{project}/locations/{location}'"
        if project != self.project:
            said = f"Permission 'aiplatform.customJobs.create' denied on resource {where}"
            return _error(403, "PERMISSION_DENIED", f"{said} (or it may not exist).")
        if location != self.region:
            said = f"Location {location} is not served at the endpoint of {self.region}"
            return _error(
                400, "INVALID_ARGUMENT", f"{said}: use {location}-aiplatform.googleapis.com"
            )
        return None

    def _job(self, project: str, location: str, job_id: str) -> FakeJob | None:
        job = self.jobs.get(job_id)
        if job is None or self._wrong_place(project, location):
            return None
        self._follow(job)
        return job

    def _follow(self, job: FakeJob) -> None:
        """The job's state, and its new log entries, as its sandbox now is."""
        body, sandbox = job.body, job.sandbox
        if sandbox is not None:  # the lines read since last asked: one timestamp, as batched
            stamp = _now()
            while job.lines_logged < len(sandbox.lines):
                self._log(job, sandbox.lines[job.lines_logged], task=True, stamp=stamp)
                job.lines_logged += 1
        if body["state"] in ENDED:
            return
        ended = sandbox is None or sandbox.exit_code is not None
        if job.cancelled:
            state = "JOB_STATE_CANCELLED" if ended else "JOB_STATE_CANCELLING"
        elif job.failure:
            state = "JOB_STATE_FAILED" if ended else "JOB_STATE_RUNNING"
        elif sandbox is None or sandbox.exit_code is None:
            state = "JOB_STATE_RUNNING"
        else:
            state = "JOB_STATE_SUCCEEDED" if sandbox.exit_code == 0 else "JOB_STATE_FAILED"
        if state != body["state"]:
            body.update(state=state, updateTime=_now())
            body.setdefault("startTime", body["updateTime"])
        if state == "JOB_STATE_FAILED":
            code = sandbox.exit_code if sandbox else None
            message = job.failure or (
                f"The replica workerpool0-0 exited with a non-zero status of {code}. "
                "To find out more about why your job exited please check the logs."
            )
            body.update(error={"code": 14 if job.failure else 3, "message": message})
        if state in ENDED:
            body["endTime"] = body["updateTime"]
            said = {
                "JOB_STATE_SUCCEEDED": "Job completed successfully.",
                "JOB_STATE_FAILED": "Job failed.",
            }
            self._log(job, {"message": said.get(state, "Job was cancelled.")})

    def _get(self, project: str, location: str, job_id: str, **_: Any) -> Any:
        job = self._job(project, location, job_id)
        if job is None:
            return _not_found(project, location, job_id)
        return 200, job.body

    def _cancel(self, project: str, location: str, job_id: str, payload: Any, **_: Any) -> Any:
        job = self._job(project, location, job_id)
        if job is None:
            return _not_found(project, location, job_id)
        refused = cancel_refusal(job.body, payload, ENDED)
        if refused:
            return refused
        job.cancelled = True
        if job.sandbox is not None:
            job.sandbox.stop()
        self._follow(job)
        return 200, {}

    def running(self) -> list[str]:
        """Jobs whose container still runs."""
        return [i for i, job in self.jobs.items() if job.sandbox and job.sandbox.exit_code is None]

    # -- Cloud Logging ----------------------------------------------------------------------

    def _log(
        self, job: FakeJob, what: str | dict[str, Any], task: bool = False, stamp: str = ""
    ) -> None:
        """An ``ml_job`` entry: a container's line (``textPayload``) or Vertex AI's own."""
        job_id = job.body["name"].rsplit("/", 1)[1]
        stream = "workerpool0-0" if task else f"ml.googleapis.com%2F{job_id}"
        labels = {"job_id": job_id, "project_id": self.project, "task_name": stream}
        entry: dict[str, Any] = {
            "logName": f"projects/{self.project}/logs/{stream}",
            "resource": {"type": "ml_job", "labels": labels},
            "timestamp": stamp or _now(),
            "insertId": f"{len(job.entries):06d}{uuid.uuid4().hex[:8]}",
            ("textPayload" if isinstance(what, str) else "jsonPayload"): what,
        }
        job.entries.append(entry)

    def _entries(self, payload: Any, **_: Any) -> Any:
        if self.over_read_quota:
            self.over_read_quota -= 1
            said = (
                "Quota exceeded for quota metric 'Read requests' of service logging.googleapis.com"
            )
            return _error(429, "RESOURCE_EXHAUSTED", said)
        if payload.get("resourceNames") != [f"projects/{self.project}"]:
            said = f"The caller does not have permission on {payload.get('resourceNames')}"
            return _error(403, "PERMISSION_DENIED", said)
        order = payload.get("orderBy", "timestamp asc")
        if order not in ("timestamp asc", "timestamp desc"):
            return _error(400, "INVALID_ARGUMENT", f"Invalid orderBy: {order}")
        size = int(payload.get("pageSize", 50))
        if not 0 < size <= 1000:
            return _error(400, "INVALID_ARGUMENT", "pageSize must be in [1, 1000]")
        try:
            keep = _matcher(str(payload.get("filter", "")))
        except ValueError as error:
            return _error(400, "INVALID_ARGUMENT", f"Unparseable filter: {error}")
        for job in self.jobs.values():
            self._follow(job)
        found = sorted(
            (e for job in self.jobs.values() for e in job.entries if keep(e)),
            key=lambda entry: (entry["timestamp"], entry["insertId"]),
            reverse=order == "timestamp desc",
        )
        start = int(payload.get("pageToken") or 0)
        answer: dict[str, Any] = {"entries": found[start : start + size]}
        if start + size < len(found):
            answer["nextPageToken"] = str(start + size)
        return 200, answer

    # -- Secret Manager ---------------------------------------------------------------------

    def _secret(self, secret: str, identity: str, **_: Any) -> Any:
        if identity not in self.secret_readers:
            said = f"Permission 'secretmanager.versions.access' denied for resource '{secret}'"
            return _error(403, "PERMISSION_DENIED", f"{said} (or it may not exist).")
        if secret not in self.secrets:
            return _error(404, "NOT_FOUND", f"Secret [{secret}] not found or has no versions.")
        data = base64.b64encode(self.secrets[secret].encode()).decode()
        return 200, {"name": f"{secret}/versions/1", "payload": {"data": data}}


_TERM = re.compile(
    r"(?P<field>resource\.type|resource\.labels\.job_id|resource\.labels\.task_name|logName)"
    r'\s*=\s*"(?P<value>[^"]*)"|timestamp\s*(?P<op>>=|<=|>|<)\s*"(?P<time>[^"]+)"'
)


def _matcher(text: str) -> Any:
    """A filter of the Logging query language (the terms used here, joined with AND)."""
    tests = []
    for term in filter(None, (part.strip() for part in text.split(" AND "))):
        found = _TERM.fullmatch(term)
        if found is None:
            raise ValueError(f"unsupported term {term!r}")
        if found["field"]:
            path, value = found["field"].split("."), found["value"]
            tests.append(lambda e, path=path, value=value: _at(e, path) == value)
        else:
            when = _nanos(found["time"])
            op = {">=": "__ge__", "<=": "__le__", ">": "__gt__", "<": "__lt__"}[found["op"]]
            tests.append(lambda e, op=op, when=when: getattr(_nanos(e["timestamp"]), op)(when))
    return lambda entry: all(test(entry) for test in tests)


def _at(entry: dict[str, Any], path: list[str]) -> Any:
    for key in path:
        entry = entry.get(key, {}) if isinstance(entry, dict) else {}
    return entry


def _nanos(stamp: str) -> tuple[str, str]:
    """An RFC 3339 timestamp, comparable: (seconds, nine digits of fraction)."""
    found = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z", stamp)
    if found is None:
        raise ValueError(f"invalid timestamp {stamp!r}")
    return found[1], (found[2] or "").ljust(9, "0")


def _claims(jwt: str) -> dict[str, Any]:
    """The claims of a JWT (a signed assertion, or a self-signed access token), unverified."""
    parts = jwt.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(parts[1] + "=="))
    except ValueError:
        return {}
    return claims


def _encoded(value: Any, numbers: bool, key: str = "") -> Any:
    """Enum fields as names, or as numbers (what ``$alt=json;enum-encoding=int`` asks for)."""
    if isinstance(value, dict):
        return {k: _encoded(v, numbers, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_encoded(item, numbers, key) for item in value]
    return enum_number(key, value) if numbers else enum_name(key, value)


def _not_found(project: str, location: str, job_id: str) -> Answer:
    name = f"projects/{project}/locations/{location}/customJobs/{job_id}"
    return _error(404, "NOT_FOUND", f"The CustomJob does not exist: {name}")


def cancel_refusal(job: dict[str, Any], payload: Any, ended: tuple[str, ...]) -> Answer | None:
    """Why Vertex AI refuses to cancel a job (custom or pipeline), or None: a body other than
    ``{}``, or a job that has ended."""
    if payload != {}:
        return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received: expected {}.")
    if job["state"] in ended:
        said = f"Cannot cancel {job['name']} in state {job['state']}."
        return _error(400, "FAILED_PRECONDITION", said)
    return None


def _error(status: int, code: str, message: str) -> Answer:
    return status, {"error": {"code": status, "message": message, "status": code}}


# -- what Vertex AI checks in a custom job ------------------------------------------------------

#: enum fields, by their JSON name: the REST API takes and gives names, or numbers
#: (``enum-encoding=int``)
_ENUMS: dict[str, Any] = {
    "acceleratorType": AcceleratorType,
    "strategy": Scheduling.Strategy,
    "state": JobState,
}
#: machine types without GPUs of their own (N1s can have some attached)
_CPU_TYPES = re.compile(
    r"n1-(standard-(4|8|16|32|64|96)|highmem-(2|4|8|16|32|64|96)|highcpu-(16|32|64|96))"
    r"|e2-(standard-(4|8|16|32)|highmem-(2|4|8|16)|highcpu-(16|32))"
    r"|n2-(standard|highmem|highcpu)-(2|4|8|16|32|48|64|80)"
)
#: machine types that come with their GPUs: type -> (accelerator, count)
_WITH_GPUS = {
    **{f"a2-highgpu-{n}g": ("NVIDIA_TESLA_A100", n) for n in (1, 2, 4, 8)},
    "a2-megagpu-16g": ("NVIDIA_TESLA_A100", 16),
    **{
        f"g2-standard-{cpus}": ("NVIDIA_L4", gpus)
        for cpus, gpus in [(4, 1), (8, 1), (12, 1), (16, 1), (32, 1), (24, 2), (48, 4), (96, 8)]
    },
}
#: what an N1 machine takes: accelerator -> counts
_N1_GPUS = {
    "NVIDIA_TESLA_T4": (1, 2, 4),
    "NVIDIA_TESLA_P4": (1, 2, 4),
    "NVIDIA_TESLA_P100": (1, 2, 4),
    "NVIDIA_TESLA_V100": (1, 2, 4, 8),
}
_LABEL_KEY, _LABEL_VALUE = re.compile(r"[a-z][a-z0-9_-]{0,62}"), re.compile(r"[a-z0-9_-]{0,63}")
#: string fields of the job spec, and what they must look like
_SHAPES = {
    "serviceAccount": r"[^@\s]+@[^@\s]+\.gserviceaccount\.com",
    "network": r"projects/[^/]+/global/networks/[^/]+",
}


class Refused(Exception):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"List of found errors: 1.Field: {where}; Message: {message}")


def enum_name(key: str, value: Any) -> Any:
    kind = _ENUMS.get(key)
    return kind(value).name if kind is not None and isinstance(value, int) else value


def enum_number(key: str, value: Any) -> Any:
    kind = _ENUMS.get(key)
    return kind[value].value if kind is not None and value in kind.__members__ else value


def custom_job_refusal(job: Any) -> str | None:
    """Why Vertex AI refuses to create ``job`` (its first bad field), or None."""
    try:  # parsed as the service parses it: known names, right types, "123s" durations
        CustomJob.from_json(json.dumps(job))
    except Exception as error:
        return f"Invalid JSON payload received. {error}"
    job = _encoded(job, numbers=False)
    try:
        if not job.get("displayName", "").strip() or len(job["displayName"]) > 128:
            raise Refused("custom_job.display_name", "Required; at most 128 characters.")
        check_labels("custom_job", job.get("labels", {}))
        spec = job.get("jobSpec", {})
        if not spec.get("workerPoolSpecs"):
            raise Refused("job_spec.worker_pool_specs", "At least one worker pool is required.")
        for index, pool in enumerate(spec["workerPoolSpecs"]):
            _check_pool(f"job_spec.worker_pool_specs[{index}]", pool, first=index == 0)
        check_shapes("job_spec", spec)
        output = spec.get("baseOutputDirectory", {}).get("outputUriPrefix", "gs://")
        if not output.startswith("gs://"):
            raise Refused("job_spec.base_output_directory", "Must be a gs:// URI.")
    except Refused as refusal:
        return str(refusal)
    return None


def check_labels(where: str, labels: dict[str, str]) -> None:
    """Vertex AI's label rules: lower-case keys and values, 64 labels at most."""
    for key, value in labels.items():
        if not (_LABEL_KEY.fullmatch(key) and _LABEL_VALUE.fullmatch(value)):
            raise Refused(f"{where}.labels[{key}]", f"Invalid label {key}={value!r}.")
    if len(labels) > 64:
        raise Refused(f"{where}.labels", "At most 64 labels.")


def check_shapes(where: str, spec: dict[str, Any]) -> None:
    """A service account and a network, as Vertex AI takes them."""
    for name, shape in _SHAPES.items():
        if name in spec and not re.fullmatch(shape, spec[name]):
            raise Refused(f"{where}.{name}", f"Invalid value {spec[name]!r}.")


def _check_pool(where: str, pool: dict[str, Any], first: bool) -> None:
    if first and str(pool.get("replicaCount")) != "1":
        raise Refused(f"{where}.replica_count", "The first worker pool has exactly 1 replica.")
    machine = pool.get("machineSpec", {})
    kind = machine.get("machineType", "")
    accelerator, count = machine.get("acceleratorType"), int(machine.get("acceleratorCount", 0))
    if not (_CPU_TYPES.fullmatch(kind) or kind in _WITH_GPUS):
        said = f'Machine type "{kind}" is not supported.'
        raise Refused(f"{where}.machine_spec.machine_type", said)
    allowed = (
        [_WITH_GPUS[kind]]
        if kind in _WITH_GPUS
        else [(gpu, n) for gpu, counts in _N1_GPUS.items() for n in counts if kind[:3] == "n1-"]
    )
    if (accelerator or count or kind in _WITH_GPUS) and (accelerator, count) not in allowed:
        said = f"Accelerator {accelerator} x {count} is not supported for machine type {kind}."
        raise Refused(f"{where}.machine_spec.accelerator_type", said)
    image = pool.get("containerSpec", {}).get("imageUri", "")
    if not re.fullmatch(r"[a-z0-9.-]+(:\d+)?/\S+", image):
        raise Refused(f"{where}.container_spec.image_uri", f"Invalid image URI {image!r}.")
