"""A FAKE Weights & Biases server: what the real W&B client (its ``wandb-core`` service)
sends when it writes a run, answered as the service does, on 127.0.0.1.

W&B's service cannot run here. This fake answers the GraphQL operations a run
with config, history, summary and an artifact needs (``/graphql``), the run's file
stream (``/files/ENTITY/PROJECT/RUN/file_stream``) and uploads to the URLs it hands
out (``/upload/...``, unauthenticated as presigned URLs are). It is as strict as
W&B about what it is sent: every GraphQL document is parsed (graphql-core), its
operation must be one the fake knows, its variables must be the ones it declares
(the non-null ones given); requests without basic authentication ``api:KEY`` with
the right key get 401. It keeps what a user would see of each run: config,
history rows, summary, exit code, and each artifact's manifest and files.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fake_http import Answer, Request
from graphql import GraphQLError, NonNullTypeNode, OperationDefinitionNode, parse


@dataclass
class FakeRun:
    config: dict[str, Any] = field(default_factory=dict)
    group: str | None = None
    name: str | None = None
    job_type: str | None = None
    notes: str | None = None
    tags: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class FakeArtifact:
    name: str
    type: str
    manifest: dict[str, Any] | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    committed: bool = False


class FakeWandb:
    """The W&B server one API key may use; ``entity`` is that key's default entity."""

    def __init__(self, api_key: str, entity: str = "lab") -> None:
        self.api_key, self.entity = api_key, entity
        self.url = ""
        self.requests: list[Request] = []
        self.runs: dict[tuple[str, str], FakeRun] = {}  # (project, run id)
        self.artifacts: dict[str, FakeArtifact] = {}
        self._uploads: dict[str, Callable[[bytes], None]] = {}
        self._operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "Viewer": self._viewer,
            "ServerFeaturesQuery": lambda _: {"serverInfo": {"features": []}},
            "UpsertBucket": self._upsert_bucket,
            "CreateRunFiles": self._create_run_files,
            "CreateArtifact": self._create_artifact,
            "CreateArtifactFiles": self._create_artifact_files,
            "CreateArtifactManifest": self._create_manifest,
            "CommitArtifact": self._commit_artifact,
            "ArtifactType": lambda _: {"project": {"artifact": None}},
        }

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Answer:
        if method == "PUT" and path.startswith("/upload/"):
            store = self._uploads.get(path.removeprefix("/upload/"))
            if store is None:
                return 403, {"error": "unknown or expired upload URL"}
            store(body)
            return 200, None
        if (
            headers.get("authorization")
            != "Basic " + base64.b64encode(f"api:{self.api_key}".encode()).decode()
        ):
            return 401, {"errors": [{"message": "user is not logged in"}]}
        if method == "POST" and path == "/graphql":
            return self._graphql(json.loads(body))
        parts = path.strip("/").split("/")
        if (
            method == "POST"
            and len(parts) == 5
            and parts[0] == "files"
            and parts[4] == "file_stream"
        ):
            return self._file_stream(parts[2], parts[3], json.loads(body))
        return 404, {"error": f"no such endpoint: {method} {path}"}

    # GraphQL

    def _graphql(self, request: dict[str, Any]) -> Answer:
        try:
            document = parse(request["query"])
        except (GraphQLError, KeyError, TypeError) as error:
            return 400, {"errors": [{"message": f"cannot parse the query: {error}"}]}
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if len(operations) != 1 or operations[0].name is None:
            return 400, {"errors": [{"message": "expected one named operation"}]}
        operation = operations[0]
        name = operation.name.value
        if name not in self._operations:
            return 400, {"errors": [{"message": f"unknown operation {name}"}]}
        variables = request.get("variables") or {}
        declared = {d.variable.name.value: d for d in operation.variable_definitions or ()}
        if unknown := set(variables) - set(declared):
            return 400, {"errors": [{"message": f"{name}: undeclared variables {unknown}"}]}
        for var, definition in declared.items():
            if isinstance(definition.type, NonNullTypeNode) and variables.get(var) is None:
                return 400, {"errors": [{"message": f"{name}: ${var} is required"}]}
        return 200, {"data": self._operations[name](variables)}

    def _viewer(self, _: dict[str, Any]) -> dict[str, Any]:
        return {
            "viewer": {
                "id": "VXNlcjox",
                "entity": self.entity,
                "username": self.entity,
                "email": f"{self.entity}@example.org",
                "flags": "{}",
                "teams": {"edges": []},
            }
        }

    def _upsert_bucket(self, variables: dict[str, Any]) -> dict[str, Any]:
        project, run_id = variables.get("project") or "uncategorized", variables["name"]
        run = self.runs.setdefault((project, run_id), FakeRun())
        if variables.get("config"):
            config = json.loads(variables["config"])
            run.config.update({key: item.get("value") for key, item in config.items()})
        for field_name, variable in (
            ("group", "groupName"),
            ("name", "displayName"),
            ("job_type", "jobType"),
            ("notes", "notes"),
        ):
            if variables.get(variable):
                setattr(run, field_name, variables[variable])
        if variables.get("tags") is not None:
            run.tags = list(variables["tags"])
        entity = variables.get("entity") or self.entity
        bucket = {
            "id": base64.b64encode(f"Run:{project}:{run_id}".encode()).decode(),
            "name": run_id,
            "displayName": run.name,
            "description": None,
            "config": json.dumps({k: {"value": v} for k, v in run.config.items()}),
            "sweepName": None,
            "project": {
                "id": "UHJvamVjdDox",
                "name": project,
                "entity": {"id": "RW50aXR5OjE=", "name": entity},
            },
            "historyLineCount": len(run.history),
        }
        return {"upsertBucket": {"bucket": bucket, "inserted": True}}

    def _create_run_files(self, variables: dict[str, Any]) -> dict[str, Any]:
        run = self.runs[(variables["project"], variables["run"])]
        files = []
        for name in variables["files"]:
            files.append(
                {
                    "name": name,
                    "uploadUrl": self._upload_url(
                        lambda data, n=name: run.files.__setitem__(n, data)
                    ),
                }
            )
        return {"createRunFiles": {"runID": variables["run"], "uploadHeaders": [], "files": files}}

    def _create_artifact(self, variables: dict[str, Any]) -> dict[str, Any]:
        spec = variables["input"]
        artifact_id = f"artifact-{len(self.artifacts) + 1}"
        self.artifacts[artifact_id] = FakeArtifact(
            spec["artifactCollectionName"], spec["artifactTypeName"]
        )
        created = {
            "id": artifact_id,
            "state": "PENDING",
            "artifactSequence": {"latestArtifact": None},
        }
        return {"createArtifact": {"artifact": created}}

    def _create_artifact_files(self, variables: dict[str, Any]) -> dict[str, Any]:
        edges = []
        for entry in variables["input"]["artifactFiles"]:
            artifact = self.artifacts[entry["artifactID"]]
            store = lambda data, a=artifact, n=entry["name"]: a.files.__setitem__(n, data)  # noqa: E731
            node = {
                "storagePath": f"wandb_artifacts/{entry['md5']}",
                "uploadUrl": self._upload_url(store),
                "uploadHeaders": [],
                "uploadMultipartUrls": None,
                "artifact": {"id": entry["artifactID"]},
            }
            edges.append({"node": node})
        return {"createArtifactFiles": {"files": {"edges": edges}}}

    def _create_manifest(self, variables: dict[str, Any]) -> dict[str, Any]:
        artifact_id = variables["artifactID"]
        artifact = self.artifacts[artifact_id]

        def store(data: bytes) -> None:
            artifact.manifest = json.loads(data)

        file: dict[str, Any] = {"id": f"manifest-file-{artifact_id}"}
        if variables["includeUpload"]:
            file.update(uploadUrl=self._upload_url(store), uploadHeaders=[])
        manifest = {"id": f"manifest-{artifact_id}", "file": file}
        return {"createArtifactManifest": {"artifactManifest": manifest}}

    def _commit_artifact(self, variables: dict[str, Any]) -> dict[str, Any]:
        artifact = self.artifacts[variables["artifactID"]]
        artifact.committed = True
        return {
            "commitArtifact": {"artifact": {"id": variables["artifactID"], "digest": "committed"}}
        }

    # file stream and uploads

    def _file_stream(self, project: str, run_id: str, request: dict[str, Any]) -> Answer:
        run = self.runs.get((project, run_id))
        if run is None:
            return 404, {"error": f"run {project}/{run_id} not found"}
        files = request.get("files") or {}
        for line in (files.get("wandb-history.jsonl") or {}).get("content", []):
            run.history.append(json.loads(line))
        for line in (files.get("wandb-summary.json") or {}).get("content", []):
            run.summary = json.loads(line)
        if request.get("complete"):
            run.exit_code = request.get("exitcode")
        return 200, {"exitcode": None, "limits": {}}

    def _upload_url(self, store: Callable[[bytes], None]) -> str:
        token = secrets.token_hex(8)
        self._uploads[token] = store
        return f"{self.url}/upload/{token}"
