"""A FAKE Kubeflow Pipelines API server, for tests: no KFP cluster runs here.

It implements the few KFP v2beta1 REST endpoints stackmagic's submission
calls through the real ``kfp.Client`` (health, pipelines, uploads of versions,
experiments, runs, terminating a run, recurring runs: see fake_kfp_recurring) and
records every request, headers and body included, for the tests to inspect. Where a real cluster would start pods,
it runs the uploaded pipeline with ``kfp.local`` in a child process (the same
entry stackmagic's local mode uses), with the environment a Kubernetes secret
would give the pods; a run's state follows that process.

It is as strict as KFP on what it is sent: list filters are read as the
v2beta1 ``Filter`` proto (every predicate operation; an invalid filter is a
400), an uploaded package must be a pipeline spec KFP can load (400 if not),
a version name is unique in its pipeline (409), the ``pipeline_id`` of a
version listing or a run must name a pipeline (404) that holds the version (400),
and only a running (or pending) run can be terminated (400).
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import yaml
from fake_http import Request
from fake_kfp_recurring import RecurringRuns

API = "/apis/v2beta1"


@dataclass
class FakeKfp(RecurringRuns):
    """State of the fake server; ``url`` is its API root."""

    url: str = ""
    token: str | None = None  # when set, requests need "Authorization: Bearer <token>"
    namespaces: set[str] = field(default_factory=lambda: {"kubeflow"})
    #: the environment the fake's "pods" get (what a Kubernetes secret would hold)
    pod_environment: dict[str, str] = field(default_factory=dict)
    execute: bool = True  # run submitted pipelines with kfp.local; else they stay RUNNING
    #: another client makes the next pipeline and version first: their creation answers 409
    race: bool = False
    requests: list[Request] = field(default_factory=list)
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> version (+ package)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the kfp.local process of each executed run: its "pods"
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fake-kfp-")))

    # -- the API ------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, Any]]:
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return 401, {
                "error": "Unauthorized",
                "message": "Request header error: there is no valid user identity or bearer token",
            }
        routes = [
            ("GET", r"/healthz", self._healthz),
            ("GET", r"/pipelines", self._list_pipelines),
            ("POST", r"/pipelines", self._create_pipeline),
            ("POST", r"/pipelines/upload_version", self._upload_version),
            ("GET", r"/pipelines/(?P<pipeline_id>[^/]+)/versions", self._list_versions),
            ("GET", r"/experiments", self._list_experiments),
            ("POST", r"/experiments", self._create_experiment),
            ("POST", r"/runs", self._create_run),
            ("GET", r"/runs/(?P<run_id>[^/:]+)", self._get_run),
            ("POST", r"/runs/(?P<run_id>[^/:]+):terminate", self._terminate_run),
            *self.recurring_routes(),
        ]
        for verb, pattern, route in routes:
            match = re.fullmatch(API + pattern, path)
            if verb == method and match:
                return route(query=query, headers=headers, body=body, **match.groupdict())
        return 404, {"message": f"no route {method} {path} in the fake KFP server"}

    def _healthz(self, **_: Any) -> tuple[int, dict[str, Any]]:
        return 200, {"multi_user": False}

    def _list_pipelines(
        self, query: Mapping[str, list[str]], **_: Any
    ) -> tuple[int, dict[str, Any]]:
        return _listed("pipelines", list(self.pipelines.values()), query)

    def _create_pipeline(self, body: bytes, **_: Any) -> tuple[int, dict[str, Any]]:
        given = json.loads(body)
        name = given["display_name"]
        if any(p["display_name"] == name for p in self.pipelines.values()):
            return 409, {"message": f"pipeline {name} exists"}
        pipeline = {
            "pipeline_id": str(uuid.uuid4()),
            "display_name": name,
            "description": given.get("description", ""),
        }
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        if self.race:  # the other client's pipeline is the one that stays
            return 409, {"message": f"pipeline {name} exists"}
        return 200, pipeline

    def _upload_version(
        self, query: Mapping[str, list[str]], headers: Mapping[str, str], body: bytes, **_: Any
    ) -> tuple[int, dict[str, Any]]:
        pipeline_id, name = query.get("pipelineid", [""])[0], query.get("name", [""])[0]
        if not (pipeline_id and name):
            return _refused(
                400, "Failed to upload a pipeline version: a pipelineid and a name are required"
            )
        if pipeline_id not in self.pipelines:
            return _refused(
                404, f"Failed to upload a pipeline version: Pipeline {pipeline_id} not found"
            )
        upload = _uploaded_file(headers, body)
        problem = "no uploadfile in the request" if upload is None else _package_problem(*upload)
        if upload is None or problem is not None:
            return _refused(400, f"Failed to upload a pipeline version: {problem}")
        if self.race:
            self._add_version(pipeline_id, name, upload[1])
        if any(
            v["pipeline_id"] == pipeline_id and v["display_name"] == name
            for v in self.versions.values()
        ):
            return _refused(
                409,
                f"Failed to upload a pipeline version: version {name} exists "
                f"in pipeline {pipeline_id}",
            )
        version = self._add_version(pipeline_id, name, upload[1])
        return 200, {k: v for k, v in version.items() if k != "package"}

    def _add_version(self, pipeline_id: str, name: str, package: bytes) -> dict[str, Any]:
        version = {
            "pipeline_version_id": str(uuid.uuid4()),
            "pipeline_id": pipeline_id,
            "display_name": name,
            "package": package,
        }
        self.versions[version["pipeline_version_id"]] = version
        return version

    def _list_versions(
        self, query: Mapping[str, list[str]], pipeline_id: str, **_: Any
    ) -> tuple[int, dict[str, Any]]:
        if pipeline_id not in self.pipelines:
            return _refused(
                404, f"Failed to list pipeline versions: Pipeline {pipeline_id} not found"
            )
        versions = [
            {k: v for k, v in version.items() if k != "package"}
            for version in self.versions.values()
            if version["pipeline_id"] == pipeline_id
        ]
        return _listed("pipeline_versions", versions, query)

    def _list_experiments(
        self, query: Mapping[str, list[str]], **_: Any
    ) -> tuple[int, dict[str, Any]]:
        namespace = query.get("namespace", [""])[0]
        if namespace and namespace not in self.namespaces:
            return 404, {"message": f"Namespace '{namespace}' not found"}
        return _listed(
            "experiments",
            [e for e in self.experiments.values() if e["namespace"] == namespace],
            query,
        )

    def _create_experiment(self, body: bytes, **_: Any) -> tuple[int, dict[str, Any]]:
        given = json.loads(body)
        experiment = {
            "experiment_id": str(uuid.uuid4()),
            "display_name": given["display_name"],
            "namespace": given.get("namespace", ""),
        }
        self.experiments[experiment["experiment_id"]] = experiment
        return 200, experiment

    def _create_run(self, body: bytes, **_: Any) -> tuple[int, dict[str, Any]]:
        given = json.loads(body)
        reference = given.get("pipeline_version_reference") or {}
        pipeline_id, version_id = reference.get("pipeline_id"), reference.get("pipeline_version_id")
        if not (pipeline_id and version_id):  # both "Input. Required." in the v2beta1 API
            return _refused(
                400,
                "Failed to create a run: pipeline_version_reference needs a "
                "pipeline_id and a pipeline_version_id",
            )
        if pipeline_id not in self.pipelines:
            return _refused(404, f"Failed to create a run: Pipeline {pipeline_id} not found")
        if given.get("experiment_id") not in self.experiments:
            return _refused(
                404, f"Failed to create a run: Experiment {given.get('experiment_id')} not found"
            )
        version = self.versions.get(version_id)
        if version is None:
            return _refused(404, f"Failed to create a run: Pipeline version {version_id} not found")
        if version["pipeline_id"] != pipeline_id:
            return _refused(
                400,
                f"Failed to create a run: pipeline version {version_id} does not "
                f"belong to pipeline {pipeline_id}",
            )
        run = {
            "run_id": str(uuid.uuid4()),
            "display_name": given["display_name"],
            "experiment_id": given["experiment_id"],
            "pipeline_version_reference": reference,
            "runtime_config": given.get("runtime_config", {}),
            "service_account": given.get("service_account"),
            "state": "RUNNING",
        }
        self.runs[run["run_id"]] = run
        self._start(run, version)
        return 200, run

    def _start(self, run: dict[str, Any], version: dict[str, Any]) -> None:
        if self.execute:
            threading.Thread(
                target=self._execute, args=(run, version["package"]), daemon=True
            ).start()

    def _execute(self, run: dict[str, Any], package: bytes) -> None:
        """What the cluster would do: run the pipeline's tasks (here with kfp.local)."""
        if run["state"] != "RUNNING":  # terminated before its pods started
            return
        code = run_with_kfp_local(
            self.scratch / run["run_id"],
            package,
            run["runtime_config"].get("parameters", {}),
            self.pod_environment,
            started=lambda process: self.processes.__setitem__(run["run_id"], process),
        )
        if run["state"] == "CANCELING":
            run["state"] = "CANCELED"
        else:
            run["state"] = "SUCCEEDED" if code == 0 else "FAILED"

    def _terminate_run(self, run_id: str, **_: Any) -> tuple[int, dict[str, Any]]:
        """As KFP: a run that is not running (or pending) cannot be terminated; its pods stop."""
        run = self.runs.get(run_id)
        if run is None:
            return _refused(404, f"Failed to terminate run {run_id}: Run {run_id} not found")
        if run["state"] not in ("RUNNING", "PENDING"):
            return _refused(400, f"Failed to terminate run {run_id}. Row not found")
        process = self.processes.get(run_id)
        run["state"] = "CANCELING" if process else "CANCELED"
        if process is not None:
            stop_tasks(process)
        return 200, {}

    def _get_run(self, run_id: str, **_: Any) -> tuple[int, dict[str, Any]]:
        if run_id not in self.runs:
            return 404, {"message": f"run {run_id} not found"}
        return 200, self.runs[run_id]


def run_with_kfp_local(
    folder: Path,
    package: bytes,
    arguments: dict[str, Any],
    environment: Mapping[str, str],
    started: Callable[[subprocess.Popen[bytes]], None],
) -> int:
    """A pipeline's tasks run here with kfp.local (stackmagic's local mode's entry), in a
    child process given ``environment`` and little else; its exit code. ``started`` gets the
    process, which leads a group of its own, as a run's pods: stopped together."""
    folder.mkdir(parents=True)
    (folder / "pipeline.yaml").write_bytes(package)
    with (folder / "log.txt").open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stackmagic.orchestrators.kfp_local",
                str(folder / "pipeline.yaml"),
                str(folder / "outputs"),
                json.dumps(arguments),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env={**_base_environment(), **environment},
            start_new_session=True,
        )
        started(process)
        return process.wait()


def stop_tasks(process: subprocess.Popen[bytes]) -> None:
    """Stop a run's kfp.local process and its tasks."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)


def _base_environment() -> dict[str, str]:
    """A pod's environment: nothing of the test process's secrets, only what Python needs."""
    keep = (
        "PATH",
        "HOME",
        "LANG",
        "STACKMAGIC_HOME",
        "TMPDIR",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT",
    )
    return {name: os.environ[name] for name in keep if name in os.environ}


#: Predicate.Operation of the v2beta1 filter proto; its JSON gives the name or the number
OPERATIONS: dict[str, Callable[[Any, Any], bool]] = {
    "EQUALS": operator.eq,
    "NOT_EQUALS": operator.ne,
    "GREATER_THAN": operator.gt,
    "GREATER_THAN_EQUALS": operator.ge,
    "LESS_THAN": operator.lt,
    "LESS_THAN_EQUALS": operator.le,
    "IN": lambda value, values: value in values,
    "IS_SUBSTRING": lambda value, part: part in value,
}
OPERATION_NUMBERS = {
    1: "EQUALS",
    2: "NOT_EQUALS",
    3: "GREATER_THAN",
    5: "GREATER_THAN_EQUALS",
    6: "LESS_THAN",
    7: "LESS_THAN_EQUALS",
    8: "IN",
    9: "IS_SUBSTRING",
}
#: the predicate's value, a oneof: protobuf's JSON takes the field's JSON name or its own
VALUES = {
    "int_value": "intValue",
    "long_value": "longValue",
    "string_value": "stringValue",
    "timestamp_value": "timestampValue",
    "int_values": "intValues",
    "long_values": "longValues",
    "string_values": "stringValues",
}
#: the keys a list filters by, for the few fields this fake keeps ("name" is the display name)
FILTER_KEYS = {
    "pipelines": {"pipeline_id", "display_name", "description"},
    "pipeline_versions": {"pipeline_version_id", "pipeline_id", "display_name"},
    "experiments": {"experiment_id", "display_name", "namespace"},
    "recurring_runs": {"recurring_run_id", "display_name", "experiment_id"},
}
GRPC_CODES = {400: 3, 404: 5, 409: 6}


class _BadFilter(ValueError):
    """A filter KFP cannot read: answered with a 400."""


def _listed(
    kind: str,
    items: list[dict[str, Any]],
    query: Mapping[str, list[str]],
) -> tuple[int, dict[str, Any]]:
    """A list answer: the items the request's filter keeps; as KFP, no key when there are none."""
    try:
        found = [item for item in items if _filter(kind, query)(item)]
    except _BadFilter as error:
        what = kind.replace("_", " ")
        return _refused(400, f"Failed to list {what}: Invalid input error: {error}")
    return 200, ({kind: found, "total_size": len(found)} if found else {})


def _filter(kind: str, query: Mapping[str, list[str]]) -> Callable[[dict[str, Any]], bool]:
    """The ``filter`` query parameter, a JSON ``Filter``: an item must meet every predicate."""
    text = query.get("filter", [""])[0]
    try:
        predicates = json.loads(text).get("predicates", []) if text else []
    except (ValueError, AttributeError):
        raise _BadFilter(f"the filter {text!r} is no JSON Filter") from None
    tests = [_predicate(kind, predicate) for predicate in predicates]
    return lambda item: all(test(item) for test in tests)


def _predicate(kind: str, predicate: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    given = predicate.get("operation")
    name = OPERATION_NUMBERS.get(given) if isinstance(given, int) else given
    if name not in OPERATIONS:
        raise _BadFilter(f"invalid predicate operation {given!r}")
    key = "display_name" if predicate.get("key") == "name" else predicate.get("key")
    if key not in FILTER_KEYS[kind]:
        raise _BadFilter(f"cannot filter {kind} by {predicate.get('key')!r}")
    values = {
        field: predicate.get(field, predicate.get(json_name))
        for field, json_name in VALUES.items()
        if field in predicate or json_name in predicate
    }
    if len(values) != 1:
        raise _BadFilter(f"a predicate needs one value, it has {sorted(values) or 'none'}")
    [(field, value)] = values.items()
    if (name == "IN") != field.endswith("_values"):
        raise _BadFilter(
            f"{name} takes {'a list of values' if name == 'IN' else 'one value'}, not {field}"
        )
    if field not in ("string_value", "string_values"):
        raise _BadFilter(f"{key} is text: compare it with a string value, not {field}")
    wanted = value["values"] if name == "IN" else value
    return lambda item: OPERATIONS[name](item[key], wanted)


def _refused(status: int, message: str) -> tuple[int, dict[str, Any]]:
    """KFP's error body (grpc-gateway's): the message, and the gRPC code."""
    return status, {"error": message, "code": GRPC_CODES.get(status, 2), "message": message}


def _package_problem(filename: str, package: bytes) -> str | None:
    """Why KFP refuses ``package`` as a pipeline (a compiled pipeline spec in YAML), or None."""
    from kfp import components

    if not filename.endswith((".yaml", ".yml")):
        return f"unexpected pipeline file format {filename!r}: this server takes YAML"
    try:
        spec = next(yaml.safe_load_all(package), None)
    except yaml.YAMLError as error:
        return f"invalid YAML: {' '.join(str(error).split())}"
    if not isinstance(spec, dict) or not (spec.get("pipelineInfo") or {}).get("name"):
        return "unknown template format: a pipeline spec has pipelineInfo.name"
    missing = [key for key in ("root", "deploymentSpec", "schemaVersion") if key not in spec]
    if missing:
        return f"invalid pipeline spec: no {', '.join(missing)}"
    try:
        components.load_component_from_text(package.decode())
    except Exception as error:  # noqa: BLE001 - whatever kfp cannot load, KFP refuses
        return f"invalid pipeline spec: {type(error).__name__}: {error}"
    return None


def _uploaded_file(headers: Mapping[str, str], body: bytes) -> tuple[str, bytes] | None:
    """The file name and content of the ``uploadfile`` part of a multipart/form-data body."""
    message = BytesParser(policy=policy.default).parsebytes(
        f"content-type: {headers.get('content-type', '')}\r\n\r\n".encode() + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "uploadfile":
            return part.get_filename() or "", part.get_payload(decode=True)
    return None
