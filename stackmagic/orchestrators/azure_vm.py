"""Azure VMs for the azure-vm orchestrator: a VM for a run, watched, and deleting itself.

The launcher names the VM (``stackmagic-RUN-TRY``), so the VM knows its own
name and resource group from its launch description. The VM makes its own
network interface and public IP, and each of them and its OS disk is marked
to go with it (``deleteOption: Delete``): the VM ends by deleting itself,
after which nothing of it is left to delete the rest. Its user-assigned
managed identity deletes it and reads --store-secret from Key Vault. Calls go
through azure-mgmt-compute, signed in with the Azure chain (a service
principal's variables, az login, a managed identity);
``--resource-manager-url`` points them elsewhere.
"""

from __future__ import annotations

import base64
import contextlib
import functools
from typing import Any

from ..azure_signin import default_credential, explained, read_key_vault_secret
from ..errors import StackmagicError
from ..flavors.base import require_module
from ..flavors.vm_orchestrators import AzureVMOrchestrator
from .clouds import VMCloud

RUN_TAG, TRY_TAG = "stackmagic-run", "stackmagic-try"
#: The image used when none is given: the Data Science VM, with Docker and NVIDIA drivers.
DEFAULT_IMAGE = "microsoft-dsvm:ubuntu-2204:2204-gen2:latest"
ADMIN_USER = "azureuser"
#: The network API that makes a VM's own network interface and public IP.
NETWORK_API_VERSION = "2020-11-01"
LAUNCHER_SIGN_IN = (
    "check the Azure sign-in of this machine (AZURE_CLIENT_ID and its secret, az login, a "
    "managed identity) and its rights in the resource group"
)
VM_SIGN_IN = "check that the VM's managed identity may delete VMs of its resource group"
_ENDED_POWER = {"stopping", "stopped", "deallocating", "deallocated"}
_ENDED_PROVISIONING = {"Deleting", "Failed"}


def _machines(machine: dict[str, Any]) -> Any:
    return _client(machine["subscription"], machine["resource_manager_url"]).virtual_machines


@functools.cache
def _client(subscription: str, url: str) -> Any:
    """One client a process: following a run asks Resource Manager every few seconds."""
    require_module("azure.mgmt.compute", "the azure-vm orchestrator", "azure")
    from azure.mgmt.compute import ComputeManagementClient

    url = url.rstrip("/")
    return ComputeManagementClient(
        default_credential(), subscription, base_url=url, credential_scopes=[f"{url}/.default"]
    )


def image_reference(image: str) -> dict[str, str]:
    """``PUBLISHER:OFFER:SKU:VERSION``, or an image's (or gallery image version's) id."""
    if image.startswith("/"):
        return {"id": image}
    publisher, offer, sku, version = image.split(":")
    return {"publisher": publisher, "offer": offer, "sku": sku, "version": version}


def _new_ssh_key() -> str:
    """The public half of a key made here and forgotten: nobody can sign in to the VM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


class AzureVM(VMCloud[AzureVMOrchestrator]):
    """One resource group's VMs, as the azure-vm orchestrator uses them."""

    cloud = "azure"
    image_option = "--vm-image"
    secret_manager = "Azure Key Vault"

    def image_has_python(self) -> bool:
        """A VM image someone chose is taken to have stackmagic; the default has only Docker."""
        return bool(self.config.vm_image)

    def machine(self, run_id: str, attempt: int) -> dict[str, Any]:
        return {
            "cloud": self.cloud,
            "subscription": self.config.subscription_id,
            "resource_group": self.config.resource_group,
            "name": f"stackmagic-{run_id}-{attempt}".lower(),
            "resource_manager_url": self.config.resource_manager_url,
            "key_vault_url": self.config.key_vault_url,
            "run": run_id,
            "try": attempt,
        }

    def launch_request(
        self, machine: dict[str, Any], script: str, *, look_up: bool = True
    ) -> dict[str, Any]:
        """The VM to create, as Resource Manager takes it; ``look_up=False`` makes no SSH key."""
        config, name = self.config, machine["name"]
        ip_configuration: dict[str, Any] = {"subnet": {"id": config.subnet_id}, "primary": True}
        if config.public_ip:
            ip_configuration["publicIPAddressConfiguration"] = {
                "name": f"{name}-ip",
                "sku": {"name": "Standard", "tier": "Regional"},
                "properties": {"deleteOption": "Delete", "publicIPAllocationMethod": "Static"},
            }
        ssh_key = config.ssh_public_key or (_new_ssh_key() if look_up else "(a new key)")
        properties: dict[str, Any] = {
            "hardwareProfile": {"vmSize": config.size},
            "storageProfile": {
                "imageReference": image_reference(config.vm_image or DEFAULT_IMAGE),
                "osDisk": {
                    "name": f"{name}-disk",
                    "createOption": "FromImage",
                    "diskSizeGB": config.disk_size_gb,
                    "deleteOption": "Delete",
                },
            },
            "osProfile": {
                "computerName": name,
                "adminUsername": ADMIN_USER,
                "customData": base64.b64encode(script.encode()).decode(),
                "linuxConfiguration": {
                    "disablePasswordAuthentication": True,
                    "ssh": {
                        "publicKeys": [
                            {
                                "path": f"/home/{ADMIN_USER}/.ssh/authorized_keys",
                                "keyData": ssh_key,
                            }
                        ]
                    },
                },
            },
            "networkProfile": {
                "networkApiVersion": NETWORK_API_VERSION,
                "networkInterfaceConfigurations": [
                    {
                        "name": f"{name}-nic",
                        "properties": {
                            "primary": True,
                            "deleteOption": "Delete",
                            "ipConfigurations": [
                                {"name": "ipconfig1", "properties": ip_configuration}
                            ],
                        },
                    }
                ],
            },
        }
        if config.spot:
            properties.update(
                {
                    "priority": "Spot",
                    "evictionPolicy": config.eviction_policy,
                    "billingProfile": {"maxPrice": config.max_price},
                }
            )
        return {
            "location": config.location,
            "tags": {**config.tags, RUN_TAG: machine["run"], TRY_TAG: str(machine["try"])},
            "identity": {
                "type": "UserAssigned",
                "userAssignedIdentities": {config.managed_identity: {}},
            },
            "properties": properties,
        }

    def launch(self, machine: dict[str, Any], request: dict[str, Any]) -> tuple[str, str]:
        """Create the VM and wait until Azure made it; its name and portal page.

        A VM Azure could not make (no Spot capacity, say) is deleted again, with what it made.
        """
        name, machines = machine["name"], _machines(machine)
        try:
            poller = machines.begin_create_or_update(machine["resource_group"], name, request)
        except Exception as error:
            raise explained(f"start the VM {name}", error, sign_in=LAUNCHER_SIGN_IN) from None
        try:
            poller.result()
        except Exception as error:
            with contextlib.suppress(StackmagicError):  # Azure's reason matters more
                self.delete(machine, name)
            raise explained(f"start the VM {name}", error, sign_in=LAUNCHER_SIGN_IN) from None
        url = (
            f"https://portal.azure.com/#resource/subscriptions/{machine['subscription']}"
            f"/resourceGroups/{machine['resource_group']}/providers/Microsoft.Compute"
            f"/virtualMachines/{name}/overview"
        )
        return name, url

    def state(self, machine: dict[str, Any], instance: str) -> str:
        """``running`` (or starting), ``ended`` (stopped, evicted, deallocated or deleted)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            found = _machines(machine).get(
                machine["resource_group"], instance, expand="instanceView"
            )
        except ResourceNotFoundError:
            return "ended"
        except Exception as error:
            raise explained(f"look up the VM {instance}", error, sign_in=LAUNCHER_SIGN_IN) from None
        properties = found["properties"]
        statuses = (properties.get("instanceView") or {}).get("statuses") or []
        power = {s["code"].removeprefix("PowerState/") for s in statuses if "code" in s}
        if properties.get("provisioningState") in _ENDED_PROVISIONING or power & _ENDED_POWER:
            return "ended"
        return "running"

    def delete(self, machine: dict[str, Any], instance: str) -> None:
        _delete(machine, instance, f"delete the VM {instance}", LAUNCHER_SIGN_IN)

    # -- on the VM itself ------------------------------------------------------------------

    @staticmethod
    def describe(machine: dict[str, Any]) -> str:
        return f"Azure VM {machine['name']} in {machine['resource_group']}"

    @staticmethod
    def read_secret(machine: dict[str, Any], name: str) -> str:
        """The secret's text in Key Vault, read with the VM's managed identity."""
        return read_key_vault_secret(
            machine["key_vault_url"],
            name,
            advice="check that the VM's managed identity may get secrets of that Key Vault",
        )

    @staticmethod
    def delete_self(machine: dict[str, Any]) -> None:
        """Ask Azure to delete this VM, with its NIC, public IP and disk; it goes as it does."""
        _delete(machine, machine["name"], f"delete this VM ({machine['name']})", VM_SIGN_IN)


def _delete(machine: dict[str, Any], name: str, action: str, sign_in: str) -> None:
    """Start deleting a VM (and what is marked to go with it), without waiting for the end."""
    try:
        _machines(machine).begin_delete(machine["resource_group"], name, polling=False)
    except Exception as error:
        raise explained(action, error, sign_in=sign_in) from None
