"""A FAKE Google Cloud endpoint, for tests: Compute Engine and Secret Manager cannot run here.

It implements the few REST endpoints the real ``google-cloud-compute`` client
and ``google-auth`` call for the gcp-vm orchestrator: an OAuth token (for the
credentials file the tests write, whose ``token_uri`` points here), instances
(insert, get, delete), zone operations (get, wait) and a Secret Manager
secret's latest version. Every request is recorded, headers and body, for
the tests to inspect; a test preempts a VM by setting its status.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fake_http import Request

TOKEN = "fake-gce-access-token"
COMPUTE = "/compute/v1/projects/(?P<project>[^/]+)/zones/(?P<zone>[^/]+)"


@dataclass
class FakeGce:
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: instances deleted, by name, in the order they went
    deleted: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)  # "projects/P/secrets/S" -> text
    #: the next insert is refused with this (status, message)
    refuse_insert: tuple[int, str] | None = None

    def request_text(self) -> str:
        return "\n".join(f"{r.method} {r.path} {json.dumps(r.headers)} "
                         f"{r.body.decode('utf-8', 'replace')}" for r in self.requests)

    def handle(self, method: str, path: str, query: Mapping[str, list[str]],
               headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        if path == "/token" and method == "POST":
            return 200, {"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"}
        # the token from /token, or a JWT the service account signed itself (self-signed access)
        if not headers.get("authorization", "").startswith("Bearer ") or len(
                headers["authorization"]) < len("Bearer ") + 16:
            return _error(401, "Request is missing required authentication credential.")
        routes = [
            ("POST", COMPUTE + "/instances", self._insert),
            ("GET", COMPUTE + "/instances/(?P<name>[^/]+)", self._get),
            ("DELETE", COMPUTE + "/instances/(?P<name>[^/]+)", self._delete),
            ("GET", COMPUTE + "/operations/(?P<operation>[^/]+)", self._operation),
            ("POST", COMPUTE + "/operations/(?P<operation>[^/]+)/wait", self._operation),
            ("GET", "/v1/(?P<secret>projects/[^/]+/secrets/[^/]+)/versions/latest:access",
             self._secret),
        ]
        for verb, pattern, route in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                return route(body=body, **match.groupdict())
        return _error(404, f"no route {method} {path} in the fake Google Cloud server")

    def _insert(self, project: str, zone: str, body: bytes, **_: Any) -> tuple[int, dict[str, Any]]:
        if self.refuse_insert is not None:
            status, message = self.refuse_insert
            self.refuse_insert = None
            return _error(status, message)
        instance = json.loads(body)
        if instance["name"] in self.instances:
            return _error(409, f"The resource '{instance['name']}' already exists")
        self.instances[instance["name"]] = {**instance, "status": "RUNNING", "zone": zone,
                                            "id": str(uuid.uuid4().int)[:19]}
        return 200, _done(project, zone, "insert", instance["name"])

    def _get(self, name: str, **_: Any) -> tuple[int, dict[str, Any]]:
        if name not in self.instances:
            return _error(404, f"The resource 'instances/{name}' was not found")
        return 200, self.instances[name]

    def _delete(self, project: str, zone: str, name: str, **_: Any) -> tuple[int, dict[str, Any]]:
        if self.instances.pop(name, None) is None:
            return _error(404, f"The resource 'instances/{name}' was not found")
        self.deleted.append(name)
        return 200, _done(project, zone, "delete", name)

    def _operation(self, project: str, zone: str, operation: str, **_: Any) -> tuple[int, dict[str, Any]]:
        return 200, _done(project, zone, "insert", operation.removeprefix("operation-"))

    def _secret(self, secret: str, **_: Any) -> tuple[int, dict[str, Any]]:
        if secret not in self.secrets:
            return _error(404, f"Secret [{secret}] not found or has no versions.")
        data = base64.b64encode(self.secrets[secret].encode()).decode()
        return 200, {"name": f"{secret}/versions/1", "payload": {"data": data}}


def _done(project: str, zone: str, kind: str, target: str) -> dict[str, Any]:
    return {"kind": "compute#operation", "name": f"operation-{target}", "status": "DONE",
            "operationType": kind, "zone": zone, "progress": 100,
            "targetLink": f"projects/{project}/zones/{zone}/instances/{target}"}


def _error(status: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"code": status, "message": message, "errors": [
        {"message": message, "domain": "global", "reason": "fake"}]}}
