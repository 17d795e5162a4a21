"""A FAKE Vertex ML Metadata, for tests: the contexts that Vertex AI experiments are made of.

It answers what the real ``MetadataServiceClient`` (REST transport) sends to make an
experiment and add a pipeline job to it: create and get a context of a region's default
metadata store, and add child contexts to one. As strict as the service: a context parses
as ``aiplatform_v1.Context`` (unknown fields refused), has a schema and an id Vertex AI
takes, is made once (a second create is ALREADY_EXISTS), and a child must exist and not be
its own parent. A pipeline job's run context is made as the job starts
(:meth:`FakeMetadata.run_context_of`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fake_vertex import Answer, _error, _now
from google.cloud.aiplatform_v1 import Context

STORE = "/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/metadataStores/default"
CONTEXT_ID = "[a-z0-9][a-z0-9-]{0,127}"
ROUTES = [
    ("POST", f"{STORE}/contexts", "_create_context"),
    ("GET", f"{STORE}/contexts/(?P<context_id>{CONTEXT_ID})", "_get_context"),
    ("POST", f"{STORE}/contexts/(?P<context_id>{CONTEXT_ID}):addContextChildren", "_add_children"),
]


@dataclass(kw_only=True)
class FakeMetadata:
    """The contexts of each region's default metadata store, by their full name."""

    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: a context's children, by the parent's name (Vertex AI keeps them as parentContexts)
    children: dict[str, list[str]] = field(default_factory=dict)
    routes: ClassVar[list[tuple[str, str, str]]] = ROUTES

    def run_context_of(self, project: str, location: str, job_id: str) -> dict[str, Any]:
        """The ``system.PipelineRun`` context Vertex AI makes for a job it starts."""
        name = f"projects/{project}/locations/{location}/metadataStores/default/contexts/{job_id}"
        context = {
            "name": name,
            "displayName": job_id,
            "schemaTitle": "system.PipelineRun",
            "schemaVersion": "0.0.1",
            "createTime": _now(),
        }
        self.contexts[name] = context
        return context

    def _create_context(
        self, project: str, location: str, payload: Any, query: Any, **_: Any
    ) -> Answer:
        [context_id] = query.get("contextId", [""])
        if not re.fullmatch(CONTEXT_ID, context_id):
            return _error(400, "INVALID_ARGUMENT", f"Invalid context id {context_id!r}.")
        try:
            Context.from_json(json.dumps(payload))
        except Exception as error:
            return _error(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {error}")
        if not payload.get("schemaTitle"):
            return _error(400, "INVALID_ARGUMENT", "Context schema_title is required.")
        if set(payload) & {"name", "createTime", "updateTime", "parentContexts"}:
            return _error(400, "INVALID_ARGUMENT", "Output only fields cannot be set.")
        name = self._name(project, location, context_id)
        if name in self.contexts:
            return _error(409, "ALREADY_EXISTS", f"Context {name} already exists.")
        now = _now()
        self.contexts[name] = {**payload, "name": name, "createTime": now, "updateTime": now}
        return 200, self.contexts[name]

    def _get_context(self, project: str, location: str, context_id: str, **_: Any) -> Answer:
        name = self._name(project, location, context_id)
        if name not in self.contexts:
            return _error(404, "NOT_FOUND", f"Context {name} not found.")
        return 200, self.contexts[name]

    def _add_children(
        self, project: str, location: str, context_id: str, payload: Any, **_: Any
    ) -> Answer:
        name = self._name(project, location, context_id)
        if name not in self.contexts:
            return _error(404, "NOT_FOUND", f"Context {name} not found.")
        if set(payload) - {"childContexts"}:
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        for child in payload.get("childContexts", []):
            if child not in self.contexts:
                return _error(404, "NOT_FOUND", f"Context {child} not found.")
            if child == name:
                return _error(400, "INVALID_ARGUMENT", "A context cannot be its own child.")
        kept = self.children.setdefault(name, [])
        kept.extend(c for c in payload.get("childContexts", []) if c not in kept)
        return 200, {}

    @staticmethod
    def _name(project: str, location: str, context_id: str) -> str:
        return (
            f"projects/{project}/locations/{location}/metadataStores/default/contexts/{context_id}"
        )
