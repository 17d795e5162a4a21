"""Compute Engine for the gcp-vm orchestrator: a VM for a run, watched, and deleting itself.

The launcher names the VM (``stackmagic-RUN-TRY``), so the VM knows its own
name, zone and project from its launch description and deletes itself
through the Compute Engine API with its service account. Secrets come from
Secret Manager, read with the same account. Calls go through Google's client
library with Application Default Credentials; ``--api-endpoint`` points both
APIs elsewhere (Private Service Connect, say).
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any

from ..errors import StackmagicError
from ..flavors.base import require_module
from ..flavors.vm_orchestrators import GCPVMOrchestrator
from .clouds import VMCloud

RUN_LABEL, TRY_LABEL = "stackmagic-run", "stackmagic-try"
_RUNNING = {"PROVISIONING", "STAGING", "RUNNING", "REPAIRING"}
_COS_FAMILY = "projects/cos-cloud/"


def _compute() -> Any:
    require_module("google.cloud.compute_v1", "the gcp-vm orchestrator", "gcp")
    from google.cloud import compute_v1

    return compute_v1


def _instances(machine: dict[str, Any]) -> Any:
    return _client("InstancesClient", machine.get("api_endpoint") or None)


@functools.cache
def _client(kind: str, endpoint: str | None) -> Any:
    """One client of a kind a process: following a run asks Compute Engine every few seconds."""
    from google.api_core.client_options import ClientOptions

    return getattr(_compute(), kind)(
        client_options=ClientOptions(api_endpoint=endpoint) if endpoint else None
    )


def _finished(machine: dict[str, Any], operation: Any, timeout: float) -> None:
    """Wait for a zone operation to end; if it failed (a zone out of capacity, say), raise why.

    Asked at --api-endpoint: the client library's own waiting asks Google's public endpoint.
    """
    from google.api_core.exceptions import from_http_status

    done, deadline = _compute().Operation.Status.DONE, time.monotonic() + timeout
    while operation.status != done:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the operation {operation.name} did not end in {timeout:.0f} s")
        operation = _client("ZoneOperationsClient", machine.get("api_endpoint") or None).wait(
            project=machine["project"], zone=machine["zone"], operation=operation.name
        )
    if operation.error.errors:
        raise from_http_status(
            operation.http_error_status_code or 500,
            "; ".join(error.message for error in operation.error.errors),
        )


def _explained(action: str, error: Exception) -> StackmagicError:
    """One line for a Google API error: what was refused, and Google's own words."""
    message = getattr(error, "message", None) or str(error)
    code = getattr(error, "code", None)
    return StackmagicError(
        f"Compute Engine refused to {action} ({code}: {message})"
        if code
        else f"Compute Engine could not {action} ({message})"
    )


class ComputeEngine(VMCloud[GCPVMOrchestrator]):
    """One project's zone, as the gcp-vm orchestrator uses it."""

    cloud = "gcp"
    image_option = "--boot-image"
    secret_manager = "Secret Manager"

    def image_has_python(self) -> bool:
        """Container-Optimized OS (the default) has Docker and no Python: it needs --image."""
        return not self.config.boot_image.startswith(_COS_FAMILY)

    def machine(self, run_id: str, attempt: int) -> dict[str, Any]:
        return {
            "cloud": self.cloud,
            "project": self.config.project,
            "zone": self.config.zone,
            "name": f"stackmagic-{run_id}-{attempt}".lower(),
            "api_endpoint": self.config.api_endpoint,
            "run": run_id,
            "try": attempt,
        }

    def launch_request(
        self, machine: dict[str, Any], script: str, *, look_up: bool = True
    ) -> dict[str, Any]:
        """The instance to insert, as the Compute Engine REST API takes it."""
        config, zone = self.config, machine["zone"]
        interface: dict[str, Any] = {
            "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]
        }
        if config.network:
            interface["network"] = config.network
        if config.subnetwork:
            interface["subnetwork"] = config.subnetwork
        body: dict[str, Any] = {
            "name": machine["name"],
            "machineType": f"zones/{zone}/machineTypes/{config.machine_type}",
            "disks": [
                {
                    "boot": True,
                    "autoDelete": True,
                    "initializeParams": {
                        "sourceImage": config.boot_image,
                        "diskSizeGb": str(config.disk_size_gb),
                    },
                }
            ],
            "networkInterfaces": [interface],
            "metadata": {"items": [{"key": "startup-script", "value": script}]},
            "labels": {
                **config.labels,
                RUN_LABEL: machine["run"].lower(),
                TRY_LABEL: str(machine["try"]),
            },
            "serviceAccounts": [
                {
                    "email": config.service_account or "default",
                    "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                }
            ],
            "scheduling": {"automaticRestart": False, "onHostMaintenance": "TERMINATE"},
        }
        if config.preemptible:
            body["scheduling"].update(
                {
                    "preemptible": True,
                    "provisioningModel": "SPOT",
                    "instanceTerminationAction": "DELETE",
                }
            )
        if config.gpu_count:
            body["guestAccelerators"] = [
                {
                    "acceleratorType": f"zones/{zone}/acceleratorTypes/{config.gpu_type}",
                    "acceleratorCount": config.gpu_count,
                }
            ]
        return body

    def launch(self, machine: dict[str, Any], request: dict[str, Any]) -> tuple[str, str]:
        """Insert the instance and wait for Compute Engine to accept it; its name and console page."""
        instance = _compute().Instance.from_json(json.dumps(request))
        try:
            operation = _instances(machine).insert_unary(
                project=machine["project"], zone=machine["zone"], instance_resource=instance
            )
            _finished(machine, operation, timeout=300)
        except Exception as error:
            raise _explained(f"start the VM {machine['name']}", error) from None
        url = (
            f"https://console.cloud.google.com/compute/instancesDetail/zones/{machine['zone']}"
            f"/instances/{machine['name']}?project={machine['project']}"
        )
        return machine["name"], url

    def state(self, machine: dict[str, Any], instance: str) -> str:
        """``running`` (or starting), ``ended`` (stopped, preempted, or deleted)."""
        from google.api_core.exceptions import NotFound

        try:
            found = _instances(machine).get(
                project=machine["project"], zone=machine["zone"], instance=instance
            )
        except NotFound:
            return "ended"
        except Exception as error:
            raise _explained(f"look up the VM {instance}", error) from None
        return "running" if found.status in _RUNNING else "ended"

    def delete(self, machine: dict[str, Any], instance: str) -> None:
        try:
            _instances(machine).delete(
                project=machine["project"], zone=machine["zone"], instance=instance
            )
        except Exception as error:
            raise _explained(f"delete the VM {instance}", error) from None

    # -- on the VM itself ------------------------------------------------------------------

    @staticmethod
    def describe(machine: dict[str, Any]) -> str:
        return f"Compute Engine VM {machine['name']} in {machine['project']}/{machine['zone']}"

    @staticmethod
    def read_secret(machine: dict[str, Any], name: str) -> str:
        """The newest version of a Secret Manager secret, read with the VM's service account."""
        from ..google_secrets import read_latest_version, secret_resource

        return read_latest_version(
            secret_resource(name, machine["project"]), machine.get("api_endpoint") or ""
        )

    @staticmethod
    def delete_self(machine: dict[str, Any]) -> None:
        """Delete this VM; Compute Engine stops it and removes its boot disk."""
        try:
            _instances(machine).delete(
                project=machine["project"], zone=machine["zone"], instance=machine["name"]
            )
        except Exception as error:
            raise _explained(f"delete this VM ({machine['name']})", error) from None
