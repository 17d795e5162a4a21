"""A FAKE Google Cloud endpoint, for tests: Compute Engine and Secret Manager cannot run here.

It implements the few REST endpoints the real ``google-cloud-compute`` client
and ``google-auth`` call for the gcp-vm orchestrator: an OAuth token (for the
credentials file the tests write, whose ``token_uri`` points here), instances
(insert, get, delete), zone operations (get, wait) and a Secret Manager
secret's latest version. Every request is recorded, headers and body, for
the tests to inspect.

It is as strict as Compute Engine on what it is sent: an instance to insert
is checked field by field as the real service checks it, and refused with a
400 and Google's error body. An accepted insert answers a running operation,
done when next asked, or done with an ``error`` when a test says so (a zone
out of Spot capacity, say). A test preempts a VM as Compute Engine does:
stopped, or deleted when its scheduling says so.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
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
    #: the next insert is accepted, but its operation ends with this error
    fail_insert: OperationError | None = None
    #: zone operations by name, as they are once done
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def preempt(self, name: str) -> None:
        """Take the VM back: deleted if its ``instanceTerminationAction`` is DELETE, else stopped."""
        instance = self.instances[name]
        if instance.get("scheduling", {}).get("instanceTerminationAction") == "DELETE":
            del self.instances[name]
            self.deleted.append(name)
        else:
            self.stop(name)

    def stop(self, name: str) -> None:
        """Stop the VM as ``gcloud compute instances stop`` (or a preemption that stops) leaves it."""
        self.instances[name]["status"] = "TERMINATED"

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, Any]]:
        if path == "/token" and method == "POST":
            return 200, {"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"}
        # the token from /token, or a JWT the service account signed itself (self-signed access)
        if (
            not headers.get("authorization", "").startswith("Bearer ")
            or len(headers["authorization"]) < len("Bearer ") + 16
        ):
            return _error(401, "Request is missing required authentication credential.")
        routes = [
            ("POST", COMPUTE + "/instances", self._insert),
            ("GET", COMPUTE + "/instances/(?P<name>[^/]+)", self._get),
            ("DELETE", COMPUTE + "/instances/(?P<name>[^/]+)", self._delete),
            ("GET", COMPUTE + "/operations/(?P<operation>[^/]+)", self._operation),
            ("POST", COMPUTE + "/operations/(?P<operation>[^/]+)/wait", self._operation),
            (
                "GET",
                "/v1/(?P<secret>projects/[^/]+/secrets/[^/]+)/versions/latest:access",
                self._secret,
            ),
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
        refusal = insert_refusal(instance, zone)
        if refusal is not None:
            return _error(400, refusal, reason="invalid")
        if instance["name"] in self.instances:
            return _error(409, f"The resource '{instance['name']}' already exists")
        failure, self.fail_insert = self.fail_insert, None
        if failure is None:
            self.instances[instance["name"]] = {
                **instance,
                "status": "RUNNING",
                "zone": zone,
                "id": str(uuid.uuid4().int)[:19],
            }
        return 200, self._started(project, zone, "insert", instance["name"], failure)

    def _get(self, name: str, **_: Any) -> tuple[int, dict[str, Any]]:
        if name not in self.instances:
            return _error(404, f"The resource 'instances/{name}' was not found")
        return 200, self.instances[name]

    def _delete(self, project: str, zone: str, name: str, **_: Any) -> tuple[int, dict[str, Any]]:
        if self.instances.pop(name, None) is None:
            return _error(404, f"The resource 'instances/{name}' was not found")
        self.deleted.append(name)
        return 200, self._started(project, zone, "delete", name)

    def _started(
        self, project: str, zone: str, kind: str, target: str, failure: OperationError | None = None
    ) -> dict[str, Any]:
        """A running operation; asked again, it is done (with ``failure`` as its error)."""
        operation = {
            "kind": "compute#operation",
            "name": f"operation-{uuid.uuid4().hex}",
            "status": "RUNNING",
            "operationType": kind,
            "zone": zone,
            "progress": 0,
            "targetLink": f"projects/{project}/zones/{zone}/instances/{target}",
        }
        done = {**operation, "status": "DONE", "progress": 100}
        if failure is not None:
            done.update(failure.as_operation_fields())
        self.operations[operation["name"]] = done
        return operation

    def _operation(self, operation: str, **_: Any) -> tuple[int, dict[str, Any]]:
        if operation not in self.operations:
            return _error(404, f"The resource 'operations/{operation}' was not found")
        return 200, self.operations[operation]

    def _secret(self, secret: str, **_: Any) -> tuple[int, dict[str, Any]]:
        if secret not in self.secrets:
            return _error(404, f"Secret [{secret}] not found or has no versions.")
        data = base64.b64encode(self.secrets[secret].encode()).decode()
        return 200, {"name": f"{secret}/versions/1", "payload": {"data": data}}


@dataclass(frozen=True)
class OperationError:
    """How Compute Engine ends an operation that failed after the request was accepted."""

    http_status: int
    code: str
    message: str

    def as_operation_fields(self) -> dict[str, Any]:
        return {
            "error": {"errors": [{"code": self.code, "message": self.message}]},
            "httpErrorStatusCode": self.http_status,
            "httpErrorMessage": HTTPStatus(self.http_status).phrase.upper(),
        }


#: What a Spot VM's insert often ends with: the zone has no capacity left for it.
ZONE_EXHAUSTED = OperationError(
    503,
    "ZONE_RESOURCE_POOL_EXHAUSTED",
    "The zone 'projects/demo-project/zones/europe-west4-a' does not have enough resources "
    "available to fulfill the request. Try a different zone, or try again later.",
)


def _error(status: int, message: str, reason: str = "fake") -> tuple[int, dict[str, Any]]:
    return status, {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        }
    }


# -- what Compute Engine checks in an instance to insert ----------------------------------------

NAME = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
#: how a resource may be named: a full URL, from projects/P/, or from zones/ or global/
RESOURCE_URL = r"(?:https?://[^/]+/compute/v1/)?(?:projects/[^/]+/)?"
IMAGE = rf"{RESOURCE_URL}global/images/(?:family/)?{NAME}"
METADATA_KEY = re.compile(r"[a-zA-Z0-9_-]{1,127}")
METADATA_VALUE_BYTES, METADATA_BYTES = 256 * 1024, 512 * 1024
LABEL_KEY, LABEL_VALUE = re.compile(r"[a-z][a-z0-9_-]{0,62}"), re.compile(r"[a-z0-9_-]{0,63}")
MOST_LABELS = 64


class _Refused(Exception):
    """An invalid field, said as Compute Engine says it."""


def insert_refusal(instance: Any, zone: str) -> str | None:
    """Why Compute Engine refuses to insert ``instance`` in ``zone`` (its first bad field)."""
    try:
        if not isinstance(instance, dict):
            raise _Refused("Invalid JSON payload received. The body must be an Instance object.")
        for check in (
            _check_name,
            _check_machine_type,
            _check_disks,
            _check_network,
            _check_metadata,
            _check_labels,
            _check_scheduling,
            _check_accelerators,
        ):
            check(instance, zone)
    except _Refused as refusal:
        return str(refusal)
    return None


def _required(path: str) -> _Refused:
    return _Refused(f"Required field 'resource.{path}' not specified")


def _invalid(path: str, value: Any, why: str) -> _Refused:
    return _Refused(f"Invalid value for field 'resource.{path}': '{value}'. {why}")


def _in_zone(path: str, url: Any, kind: str, zone: str) -> None:
    """A zonal resource (``zones/ZONE/KIND/NAME``) of the instance's own zone."""
    match = re.fullmatch(rf"{RESOURCE_URL}zones/([^/]+)/{kind}/{NAME}", str(url or ""))
    if match is None:
        raise _invalid(path, url, f"Must be a URL of the form zones/ZONE/{kind}/NAME")
    if match[1] != zone:
        raise _invalid(path, url, f"Must be in the instance's zone, {zone}")


def _check_name(instance: dict[str, Any], zone: str) -> None:
    name = instance.get("name")
    if not name:
        raise _required("name")
    if not re.fullmatch(NAME, str(name)):
        raise _invalid("name", name, f"Must be a match of regex '(?:{NAME})'")


def _check_machine_type(instance: dict[str, Any], zone: str) -> None:
    if not instance.get("machineType"):
        raise _required("machineType")
    _in_zone("machineType", instance["machineType"], "machineTypes", zone)


def _check_disks(instance: dict[str, Any], zone: str) -> None:
    disks = instance.get("disks") or []
    if not disks:
        raise _required("disks")
    if [index for index, disk in enumerate(disks) if disk.get("boot")] != [0]:
        raise _invalid(
            "disks",
            "",
            "Exactly one boot disk is required, and it must be the first "
            "disk attached to the instance.",
        )
    for index, disk in enumerate(disks):
        params = disk.get("initializeParams") or {}
        image, size = params.get("sourceImage"), params.get("diskSizeGb")
        if index == 0 and not (image or disk.get("source")):
            raise _required("disks[0].initializeParams.sourceImage")
        if image and not re.fullmatch(IMAGE, image):
            raise _invalid(
                f"disks[{index}].initializeParams.sourceImage",
                image,
                "Must be an image URL: projects/PROJECT/global/images/NAME or "
                "projects/PROJECT/global/images/family/FAMILY",
            )
        if size is not None and not (str(size).isdigit() and int(size) > 0):
            raise _invalid(
                f"disks[{index}].initializeParams.diskSizeGb",
                size,
                "Must be a positive number of GB.",
            )


def _check_network(instance: dict[str, Any], zone: str) -> None:
    if not instance.get("networkInterfaces"):
        raise _invalid("networkInterfaces", "", "At least one network interface is required.")


def _check_metadata(instance: dict[str, Any], zone: str) -> None:
    keys: set[str] = set()
    total = 0
    for index, item in enumerate((instance.get("metadata") or {}).get("items") or []):
        key, value = item.get("key", ""), item.get("value", "")
        if not isinstance(key, str) or not METADATA_KEY.fullmatch(key):
            raise _invalid(
                f"metadata.items[{index}].key",
                key,
                "Must be a match of regex '[a-zA-Z0-9-_]{1,127}'",
            )
        if key in keys:
            raise _invalid("metadata", key, "Duplicate metadata key.")
        if not isinstance(value, str):
            raise _invalid(f"metadata.items[{index}].value", value, "Must be a string.")
        size = len(value.encode())
        if size > METADATA_VALUE_BYTES:
            raise _invalid(
                f"metadata.items[{index}].value",
                f"{size} bytes",
                "A metadata value may have at most 262144 bytes (256 KiB).",
            )
        keys.add(key)
        total += len(key.encode()) + size
    if total > METADATA_BYTES:
        raise _invalid(
            "metadata",
            f"{total} bytes",
            "The keys and values of all metadata must be less than 512 KB.",
        )


def _check_labels(instance: dict[str, Any], zone: str) -> None:
    labels = instance.get("labels") or {}
    if len(labels) > MOST_LABELS:
        raise _invalid("labels", len(labels), f"An instance has at most {MOST_LABELS} labels.")
    for key, value in labels.items():
        if not LABEL_KEY.fullmatch(key) or not LABEL_VALUE.fullmatch(value):
            raise _invalid(
                f"labels.{key}",
                value,
                "Label keys start with a lowercase letter; keys "
                "and values have at most 63 lowercase letters, digits, - or _.",
            )


def _check_scheduling(instance: dict[str, Any], zone: str) -> None:
    """Enums, and what a preemptible or Spot VM must say (the defaults are for standard VMs)."""
    scheduling = instance.get("scheduling") or {}
    for option, allowed in (
        ("onHostMaintenance", ("MIGRATE", "TERMINATE")),
        ("provisioningModel", ("STANDARD", "SPOT")),
        ("instanceTerminationAction", ("STOP", "DELETE")),
    ):
        if scheduling.get(option, allowed[0]) not in allowed:
            raise _invalid(
                f"scheduling.{option}", scheduling[option], f"Must be one of {', '.join(allowed)}."
            )
    spot = scheduling.get("provisioningModel") == "SPOT"
    if scheduling.get("preemptible") and scheduling.get("provisioningModel") == "STANDARD":
        raise _invalid(
            "scheduling.provisioningModel",
            "STANDARD",
            "A preemptible instance cannot have the STANDARD provisioning model.",
        )
    if scheduling.get("preemptible") or spot:
        if scheduling.get("automaticRestart", True):
            raise _invalid(
                "scheduling.automaticRestart",
                "true",
                "Preemptible instances cannot be automatically restarted.",
            )
        maintenance = scheduling.get("onHostMaintenance", "MIGRATE")
        if maintenance != "TERMINATE":
            raise _invalid(
                "scheduling.onHostMaintenance",
                maintenance,
                "Preemptible instances must have onHostMaintenance TERMINATE.",
            )
    if "instanceTerminationAction" in scheduling and not (spot or "maxRunDuration" in scheduling):
        raise _invalid(
            "scheduling.instanceTerminationAction",
            scheduling["instanceTerminationAction"],
            "A termination action is only for "
            "SPOT instances (provisioningModel SPOT) or ones with a maxRunDuration.",
        )


def _check_accelerators(instance: dict[str, Any], zone: str) -> None:
    accelerators = instance.get("guestAccelerators") or []
    for index, accelerator in enumerate(accelerators):
        _in_zone(
            f"guestAccelerators[{index}].acceleratorType",
            accelerator.get("acceleratorType"),
            "acceleratorTypes",
            zone,
        )
        if int(accelerator.get("acceleratorCount", 0)) < 1:
            raise _invalid(
                f"guestAccelerators[{index}].acceleratorCount",
                accelerator.get("acceleratorCount", 0),
                "Must be 1 or more.",
            )
    maintenance = (instance.get("scheduling") or {}).get("onHostMaintenance", "MIGRATE")
    if accelerators and maintenance != "TERMINATE":
        raise _invalid(
            "scheduling.onHostMaintenance",
            maintenance,
            "Instances with guest accelerators do not support live migration.",
        )
