"""A FAKE Kubeflow Pipelines API server, for tests: no KFP cluster runs here.

It implements the few KFP v2beta1 REST endpoints stackmagic's submission
calls through the real ``kfp.Client`` (health, pipelines, uploads of versions,
experiments, runs) and records every request, headers and body
included, for the tests to inspect. Where a real cluster would start pods,
it runs the uploaded pipeline with ``kfp.local`` in a child process (the same
entry stackmagic's local mode uses), with the environment a Kubernetes secret
would give the pods; a run's state follows that process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from fake_http import Request

API = "/apis/v2beta1"


@dataclass
class FakeKfp:
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
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fake-kfp-")))

    def request_text(self) -> str:
        """Every request's headers and body, as text, for searching."""
        return "\n".join(
            f"{r.method} {r.path} {json.dumps(r.headers)} {r.body.decode('utf-8', 'replace')}"
            for r in self.requests
        )

    # -- the API ------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str],
               body: bytes) -> tuple[int, dict[str, Any]]:
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "Unauthorized", "message": "Request header error: there is no "
                         "valid user identity or bearer token"}
        routes = [
            ("GET", r"/healthz", self._healthz),
            ("GET", r"/pipelines", self._list_pipelines),
            ("POST", r"/pipelines", self._create_pipeline),
            ("POST", r"/pipelines/upload_version", self._upload_version),
            ("GET", r"/pipelines/(?P<pipeline_id>[^/]+)/versions", self._list_versions),
            ("GET", r"/experiments", self._list_experiments),
            ("POST", r"/experiments", self._create_experiment),
            ("POST", r"/runs", self._create_run),
            ("GET", r"/runs/(?P<run_id>[^/]+)", self._get_run),
        ]
        for verb, pattern, route in routes:
            match = re.fullmatch(API + pattern, path)
            if verb == method and match:
                return route(query=query, headers=headers, body=body, **match.groupdict())
        return 404, {"message": f"no route {method} {path} in the fake KFP server"}

    def _healthz(self, **_: Any) -> tuple[int, dict[str, Any]]:
        return 200, {"multi_user": False}

    def _list_pipelines(self, query: Mapping[str, list[str]], **_: Any) -> tuple[int, dict[str, Any]]:
        name = _filtered_name(query)
        found = [p for p in self.pipelines.values() if name is None or p["display_name"] == name]
        return 200, ({"pipelines": found, "total_size": len(found)} if found else {})

    def _create_pipeline(self, body: bytes, **_: Any) -> tuple[int, dict[str, Any]]:
        given = json.loads(body)
        name = given["display_name"]
        if any(p["display_name"] == name for p in self.pipelines.values()):
            return 409, {"message": f"pipeline {name} exists"}
        pipeline = {"pipeline_id": str(uuid.uuid4()), "display_name": name,
                    "description": given.get("description", "")}
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        if self.race:  # the other client's pipeline is the one that stays
            return 409, {"message": f"pipeline {name} exists"}
        return 200, pipeline

    def _upload_version(self, query: Mapping[str, list[str]], headers: Mapping[str, str], body: bytes,
                        **_: Any) -> tuple[int, dict[str, Any]]:
        pipeline_id = query["pipelineid"][0]
        if pipeline_id not in self.pipelines:
            return 404, {"message": f"no pipeline {pipeline_id}"}
        name, package = query["name"][0], _uploaded_file(headers, body)
        if self.race:
            self._add_version(pipeline_id, name, package)
            return 409, {"message": f"version {name} exists"}
        version = self._add_version(pipeline_id, name, package)
        return 200, {k: v for k, v in version.items() if k != "package"}

    def _add_version(self, pipeline_id: str, name: str, package: bytes) -> dict[str, Any]:
        version = {"pipeline_version_id": str(uuid.uuid4()), "pipeline_id": pipeline_id,
                   "display_name": name, "package": package}
        self.versions[version["pipeline_version_id"]] = version
        return version

    def _list_versions(self, query: Mapping[str, list[str]], pipeline_id: str,
                       **_: Any) -> tuple[int, dict[str, Any]]:
        name = _filtered_name(query)
        found = [{k: v for k, v in version.items() if k != "package"}
                 for version in self.versions.values()
                 if version["pipeline_id"] == pipeline_id and name in (None, version["display_name"])]
        return 200, ({"pipeline_versions": found, "total_size": len(found)} if found else {})

    def _list_experiments(self, query: Mapping[str, list[str]], **_: Any) -> tuple[int, dict[str, Any]]:
        namespace = query.get("namespace", [""])[0]
        if namespace and namespace not in self.namespaces:
            return 404, {"message": f"Namespace '{namespace}' not found"}
        name = _filtered_name(query)
        found = [e for e in self.experiments.values()
                 if name in (None, e["display_name"]) and e["namespace"] == namespace]
        return 200, ({"experiments": found, "total_size": len(found)} if found else {})

    def _create_experiment(self, body: bytes, **_: Any) -> tuple[int, dict[str, Any]]:
        given = json.loads(body)
        experiment = {"experiment_id": str(uuid.uuid4()), "display_name": given["display_name"],
                      "namespace": given.get("namespace", "")}
        self.experiments[experiment["experiment_id"]] = experiment
        return 200, experiment

    def _create_run(self, body: bytes, **_: Any) -> tuple[int, dict[str, Any]]:
        given = json.loads(body)
        reference = given["pipeline_version_reference"]
        version = self.versions.get(reference["pipeline_version_id"])
        if version is None or given.get("experiment_id") not in self.experiments:
            return 400, {"message": "unknown pipeline version or experiment"}
        run = {"run_id": str(uuid.uuid4()), "display_name": given["display_name"],
               "experiment_id": given["experiment_id"], "pipeline_version_reference": reference,
               "runtime_config": given.get("runtime_config", {}),
               "service_account": given.get("service_account"), "state": "RUNNING"}
        self.runs[run["run_id"]] = run
        if self.execute:
            threading.Thread(target=self._execute, args=(run, version["package"]), daemon=True).start()
        return 200, run

    def _execute(self, run: dict[str, Any], package: bytes) -> None:
        """What the cluster would do: run the pipeline's tasks (here with kfp.local)."""
        folder = self.scratch / run["run_id"]
        folder.mkdir(parents=True)
        (folder / "pipeline.yaml").write_bytes(package)
        arguments = run["runtime_config"].get("parameters", {})
        with (folder / "log.txt").open("wb") as log:
            code = subprocess.call(
                [sys.executable, "-m", "stackmagic.orchestrators.kfp_local",
                 str(folder / "pipeline.yaml"), str(folder / "outputs"), json.dumps(arguments)],
                stdout=log, stderr=subprocess.STDOUT, cwd=folder,
                env={**_base_environment(), **self.pod_environment},
            )
        run["state"] = "SUCCEEDED" if code == 0 else "FAILED"

    def _get_run(self, run_id: str, **_: Any) -> tuple[int, dict[str, Any]]:
        if run_id not in self.runs:
            return 404, {"message": f"run {run_id} not found"}
        return 200, self.runs[run_id]


def _base_environment() -> dict[str, str]:
    """A pod's environment: nothing of the test process's secrets, only what Python needs."""
    keep = ("PATH", "HOME", "LANG", "STACKMAGIC_HOME", "TMPDIR", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT")
    return {name: os.environ[name] for name in keep if name in os.environ}


def _filtered_name(query: Mapping[str, list[str]]) -> str | None:
    """The display name an EQUALS filter asks for, if any."""
    text = query.get("filter", [""])[0]
    if not text:
        return None
    predicates = json.loads(text).get("predicates", [])
    for predicate in predicates:
        if predicate.get("key") in ("display_name", "name"):
            return predicate.get("string_value", predicate.get("stringValue"))
    return None


def _uploaded_file(headers: Mapping[str, str], body: bytes) -> bytes:
    """The ``uploadfile`` part of a multipart/form-data body."""
    message = BytesParser(policy=policy.default).parsebytes(
        f"content-type: {headers['content-type']}\r\n\r\n".encode() + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "uploadfile":
            return part.get_payload(decode=True)
    raise ValueError("no uploadfile in the upload")
