"""A FAKE Vertex AI Pipelines, for tests: the PipelineService's pipeline jobs, beside the fake
custom jobs, Secret Manager and token endpoint of tests/fake_vertex.py (none can run here).

It answers what the real ``google-cloud-aiplatform`` clients (``PipelineServiceClient`` and
``ScheduleServiceClient``, REST transport) send: create, get and cancel a pipeline job of one
project's region, create and delete a schedule (a test fires one with
:meth:`FakeVertexPipelines.fire`), each call made by an identity with a token from here.
It is as strict as the service on what it is sent: a job parses as
``aiplatform_v1.PipelineJob`` (unknown fields refused), its ``pipelineSpec`` as KFP's
``PipelineSpec`` proto and as a pipeline kfp can load, every parameter value is one of the
pipeline's inputs and of that input's type, the output directory is a gs:// one, labels, the
service account, network and CMEK key are as Vertex AI takes them; a schedule has a cron of
five fields and a job request for its own project and region. A job whose image is in
``unpullable`` fails before any task starts.

Where Vertex AI would start the tasks' containers, it runs the spec with ``kfp.local`` (as
tests/fake_kfp.py does), as the job's service account (a key file whose tokens come from here)
with ``task_environment``; the job's state follows that process, its task details kfp.local's
log of each task.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

import yaml
from fake_kfp import run_with_kfp_local, stop_tasks
from fake_vertex import (
    FakeVertex,
    Refused,
    _error,
    _now,
    cancel_refusal,
    check_labels,
    check_shapes,
)
from fake_vertex_metadata import FakeMetadata
from google.cloud.aiplatform_v1 import PipelineJob, Schedule

PLACE = "/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
JOBS, SCHEDULES = f"{PLACE}/pipelineJobs", f"{PLACE}/schedules"
ENDED = ("PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED")
#: what a pipeline input's type takes, by its ``parameterType`` in the spec
_TYPES: dict[str, tuple[type, ...]] = {
    "NUMBER_DOUBLE": (int, float),
    "NUMBER_INTEGER": (int, float),
    "STRING": (str,),
    "BOOLEAN": (bool,),
    "STRUCT": (dict,),
    "LIST": (list,),
}
#: a schedule's cron: five fields, after an optional time zone
_CRON = re.compile(r"(?:(?:TZ|CRON_TZ)=[A-Za-z_/+-]+ )?\S+( \S+){4}")
_KMS_KEY = r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+"
#: kfp.local's log of a task: started, and ended
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (SUCCESS|FAILURE)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class FakePipelineJob:
    body: dict[str, Any]
    #: who created it
    creator: str
    #: the ``system.PipelineRun`` context Vertex AI made for it, which experiments take
    run_context: dict[str, Any] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    cancelled: bool = False


@dataclass
class FakeVertexPipelines(FakeVertex, FakeMetadata):
    #: what every task's container gets besides its identity (the stores' emulator settings)
    task_environment: dict[str, str] = field(default_factory=dict)
    pipeline_jobs: dict[str, FakePipelineJob] = field(default_factory=dict)
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: ClassVar[list[tuple[str, str, str]]] = [
        *FakeVertex.routes,
        *FakeMetadata.routes,
        ("POST", JOBS, "_create_pipeline_job"),
        ("GET", JOBS + "/(?P<job_id>[a-z0-9-]+)", "_get_pipeline_job"),
        ("POST", JOBS + "/(?P<job_id>[a-z0-9-]+):cancel", "_cancel_pipeline_job"),
        ("POST", SCHEDULES, "_create_schedule"),
        ("DELETE", SCHEDULES + "/(?P<schedule_id>[0-9]+)", "_delete_schedule"),
    ]

    def _create_pipeline_job(
        self, project: str, location: str, payload: Any, identity: str, **_: Any
    ) -> Any:
        wrong = self._wrong_place(project, location)
        if wrong:
            return wrong
        refusal = pipeline_job_refusal(payload)
        if refusal:
            return _error(400, "INVALID_ARGUMENT", refusal)
        return 200, self._start_job(project, location, payload, identity)

    def _start_job(
        self, project: str, location: str, payload: dict[str, Any], identity: str
    ) -> dict[str, Any]:
        job_id = f"{payload['pipelineSpec']['pipelineInfo']['name']}-{uuid.uuid4().hex[:14]}"
        name = f"projects/{project}/locations/{location}/pipelineJobs/{job_id}"
        created = _now()
        body = {
            **payload,
            "name": name,
            "state": "PIPELINE_STATE_RUNNING",
            "createTime": created,
            "startTime": created,
            "updateTime": created,
        }
        job = FakePipelineJob(
            body, creator=identity, run_context=self.run_context_of(project, location, job_id)
        )
        self.pipeline_jobs[job_id] = job
        threading.Thread(target=self._execute, args=(job_id, job), daemon=True).start()
        return body

    def _execute(self, job_id: str, job: FakePipelineJob) -> None:
        """What Vertex AI would do: the tasks' containers, here kfp.local's, as the job's
        account; none starts when an image cannot be pulled."""
        spec = job.body["pipelineSpec"]
        images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
        unpullable = sorted(images & self.unpullable)
        folder = self.folder / job_id
        folder.mkdir(parents=True)
        code = 1
        if not unpullable:
            identity = self.identity(folder, job.body.get("serviceAccount"))
            code = run_with_kfp_local(
                folder / "run",
                yaml.safe_dump(spec).encode(),
                _typed(spec, job.body["runtimeConfig"].get("parameterValues", {})),
                {**self.task_environment, "GOOGLE_APPLICATION_CREDENTIALS": str(identity)},
                started=lambda process: setattr(job, "process", process),
            )
        with self._lock:
            if job.cancelled:
                state = "PIPELINE_STATE_CANCELLED"
            else:
                state = "PIPELINE_STATE_SUCCEEDED" if code == 0 else "PIPELINE_STATE_FAILED"
            job.body.update(state=state, updateTime=_now(), endTime=_now())
            job.body["jobDetail"] = self._job_detail(job_id, job)
            if state == "PIPELINE_STATE_FAILED":
                said = (
                    f"Unable to pull image {unpullable[0]}."
                    if unpullable
                    else "The DAG failed because some tasks failed."
                )
                job.body["error"] = {"code": 9, "message": said}

    def _pipeline_job(self, project: str, location: str, job_id: str) -> FakePipelineJob | None:
        job = self.pipeline_jobs.get(job_id)
        if job is None or self._wrong_place(project, location):
            return None
        job.body["jobDetail"] = self._job_detail(job_id, job)
        return job

    def _job_detail(self, job_id: str, job: FakePipelineJob) -> dict[str, Any]:
        return {
            "pipelineRunContext": job.run_context,
            "taskDetails": self._task_details(job_id, job),
        }

    def _task_details(self, job_id: str, job: FakePipelineJob) -> list[dict[str, Any]]:
        """Each task's state, as kfp.local's log tells it."""
        log = self.folder / job_id / "run" / "log.txt"
        text = _ANSI.sub("", log.read_text(errors="replace")) if log.exists() else ""
        started = set(_STARTED.findall(text))
        finished = dict(_FINISHED.findall(text))
        ended = job.body["state"] in ENDED
        details = []
        for number, (key, task) in enumerate(
            job.body["pipelineSpec"]["root"]["dag"]["tasks"].items()
        ):
            if key in finished:
                state = "SUCCEEDED" if finished[key] == "SUCCESS" else "FAILED"
            elif key in started:
                state = "CANCELLED" if ended else "RUNNING"
            else:
                state = "NOT_TRIGGERED" if ended else "PENDING"
            details.append(
                {"taskId": str(number + 1), "taskName": task["taskInfo"]["name"], "state": state}
            )
        return details

    def _get_pipeline_job(self, project: str, location: str, job_id: str, **_: Any) -> Any:
        job = self._pipeline_job(project, location, job_id)
        if job is None:
            return _not_found(project, location, job_id)
        return 200, job.body

    def _cancel_pipeline_job(
        self, project: str, location: str, job_id: str, payload: Any, **_: Any
    ) -> Any:
        job = self._pipeline_job(project, location, job_id)
        if job is None:
            return _not_found(project, location, job_id)
        refused = cancel_refusal(job.body, payload, ENDED)
        if refused:
            return refused
        job.cancelled = True
        job.body.update(state="PIPELINE_STATE_CANCELLING", updateTime=_now())
        if job.process is not None:
            stop_tasks(job.process)
        return 200, {}

    def _create_schedule(
        self, project: str, location: str, payload: Any, identity: str, **_: Any
    ) -> Any:
        wrong = self._wrong_place(project, location)
        if wrong:
            return wrong
        refusal = schedule_refusal(payload, f"projects/{project}/locations/{location}")
        if refusal:
            return _error(400, "INVALID_ARGUMENT", refusal)
        schedule_id = str(uuid.uuid4().int)[:19]
        name = f"projects/{project}/locations/{location}/schedules/{schedule_id}"
        created = _now()
        schedule = {**payload, "name": name, "state": "ACTIVE", "createTime": created}
        schedule.update(updateTime=created, startTime=created, creator=identity)
        self.schedules[schedule_id] = schedule
        return 200, {k: v for k, v in schedule.items() if k != "creator"}

    def _delete_schedule(self, project: str, location: str, schedule_id: str, **_: Any) -> Any:
        name = f"projects/{project}/locations/{location}/schedules/{schedule_id}"
        if self._wrong_place(project, location) or schedule_id not in self.schedules:
            return _error(404, "NOT_FOUND", f"The Schedule does not exist: {name}")
        del self.schedules[schedule_id]
        return 200, {
            "name": f"{name}/operations/{uuid.uuid4().int % 10**19}",
            "done": True,
            "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
        }

    def fire(self, schedule_id: str) -> FakePipelineJob:
        """What Vertex AI does when the schedule's cron comes: create its pipeline job."""
        schedule = self.schedules[schedule_id]
        request = schedule["createPipelineJobRequest"]
        _, project, _, location = request["parent"].split("/")
        with self._lock:
            body = self._start_job(
                project,
                location,
                {**request["pipelineJob"], "scheduleName": schedule["name"]},
                schedule["creator"],
            )
        return self.pipeline_jobs[body["name"].rsplit("/", 1)[1]]

    def stop_all(self) -> None:
        """Stop every job's tasks still running (the test is over)."""
        for job in self.pipeline_jobs.values():
            if job.process is not None and job.process.poll() is None:
                stop_tasks(job.process)


def pipeline_job_refusal(job: Any) -> str | None:
    """Why Vertex AI refuses to create the pipeline job ``job`` (its first bad field), or None."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    try:  # parsed as the service parses it: known names, right types
        PipelineJob.from_json(json.dumps(job))
    except Exception as error:
        return f"Invalid JSON payload received. {error}"
    try:
        if not job.get("displayName", "").strip() or len(job["displayName"]) > 128:
            raise Refused("pipeline_job.display_name", "Required; at most 128 characters.")
        check_labels("pipeline_job", job.get("labels", {}))
        check_shapes("pipeline_job", job)
        key = job.get("encryptionSpec", {}).get("kmsKeyName")
        if key is not None and not re.fullmatch(_KMS_KEY, key):
            raise Refused("pipeline_job.encryption_spec.kms_key_name", f"Invalid key {key!r}.")
        spec = job.get("pipelineSpec")
        if not spec:
            raise Refused("pipeline_job.pipeline_spec", "Required (or a template_uri).")
        try:
            json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
        except json_format.ParseError as error:
            raise Refused("pipeline_job.pipeline_spec", f"Not a PipelineSpec: {error}") from None
        _check_loads(spec)
        runtime = job.get("runtimeConfig", {})
        if not runtime.get("gcsOutputDirectory", "").startswith("gs://"):
            said = "A gs:// pipeline root is required."
            raise Refused("pipeline_job.runtime_config.gcs_output_directory", said)
        _check_parameters(spec, runtime.get("parameterValues", {}))
    except Refused as refusal:
        return str(refusal)
    return None


def schedule_refusal(schedule: Any, parent: str) -> str | None:
    """Why Vertex AI refuses to create ``schedule`` in ``parent``, or None."""
    try:
        Schedule.from_json(json.dumps(schedule))
    except Exception as error:
        return f"Invalid JSON payload received. {error}"
    if not schedule.get("displayName", "").strip():
        return str(Refused("schedule.display_name", "Required."))
    if not _CRON.fullmatch(schedule.get("cron", "")):
        return str(Refused("schedule.cron", f"Invalid cron {schedule.get('cron')!r}."))
    if int(schedule.get("maxConcurrentRunCount", 0)) < 1:
        return str(Refused("schedule.max_concurrent_run_count", "Must be 1 or more."))
    request = schedule.get("createPipelineJobRequest")
    if not request or request.get("parent") != parent:
        said = f"A request to create a pipeline job in {parent} is required."
        return str(Refused("schedule.create_pipeline_job_request", said))
    return pipeline_job_refusal(request.get("pipelineJob", {}))


def _check_loads(spec: dict[str, Any]) -> None:
    from kfp import components

    try:
        components.load_component_from_text(yaml.safe_dump(spec))
    except Exception as error:  # noqa: BLE001 - whatever kfp cannot load, Vertex AI refuses
        said = f"{type(error).__name__}: {error}"
        raise Refused("pipeline_job.pipeline_spec", f"Invalid pipeline: {said}") from None


def _check_parameters(spec: dict[str, Any], values: dict[str, Any]) -> None:
    """Every value is for one of the pipeline's inputs, of that input's type."""
    inputs = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    for name, value in values.items():
        where = f"pipeline_job.runtime_config.parameter_values[{name}]"
        if name not in inputs:
            raise Refused(where, f"The pipeline has no input parameter {name}.")
        kind = inputs[name]["parameterType"]
        integral = kind != "NUMBER_INTEGER" or (
            isinstance(value, (int, float)) and float(value).is_integer()
        )
        if (
            not isinstance(value, _TYPES[kind])
            or (isinstance(value, bool) and kind != "BOOLEAN")
            or not integral
        ):
            raise Refused(where, f"Expected a {kind} value, got {value!r}.")
    missing = [
        name
        for name, given in inputs.items()
        if name not in values and "defaultValue" not in given and not given.get("isOptional")
    ]
    if missing:
        said = f"No value for the input parameter {missing[0]}, which has no default."
        raise Refused("pipeline_job.runtime_config.parameter_values", said)


def _typed(spec: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The values as their inputs' types: a ``Value`` has one kind of number, and Vertex AI
    gives an integer input an integer."""
    inputs = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    return {
        name: int(value) if inputs[name]["parameterType"] == "NUMBER_INTEGER" else value
        for name, value in values.items()
    }


def _not_found(project: str, location: str, job_id: str) -> tuple[int, dict[str, Any]]:
    name = f"projects/{project}/locations/{location}/pipelineJobs/{job_id}"
    return _error(404, "NOT_FOUND", f"The PipelineJob does not exist: {name}")
