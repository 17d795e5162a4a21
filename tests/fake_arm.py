"""A FAKE Azure Resource Manager for VMs, for tests: Azure's API cannot run here.

It is tests/fake_azureml.FakeAzure (over TLS: Microsoft Entra ID's tokens and
Key Vault's secrets, behind Key Vault's challenge) with the Compute routes the
real ``azure-mgmt-compute`` calls for the azure-vm orchestrator:

- a VM created (PUT), read (with its instance view) and deleted (DELETE), for
  principals with rights in the resource group only;
- long-running operations as Resource Manager runs them: a 201 or 202 naming
  an ``Azure-AsyncOperation`` URL (and a Retry-After), whose status is
  ``InProgress`` until it is asked, then ``Succeeded`` or ``Failed`` with
  Azure's error;
- the network interface, public IP and OS disk a VM makes itself, which go
  with it when their ``deleteOption`` is ``Delete``.

It is as strict as Resource Manager on a VM to create: checked field by field
(unknown fields refused), refused with a 400 and Azure's error body. The
custom data a VM gets is decoded and kept, for tests to run and search. A
test refuses the next create, makes its operation fail (no capacity), or
evicts a Spot VM as Azure does.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fake_azureml import RUNNER, SUBSCRIPTION, Answer, FakeAzure, _error

RESOURCE_GROUP, LOCATION = "runs", "westeurope"
GROUP_PATH = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
SUBNET = f"{GROUP_PATH}/providers/Microsoft.Network/virtualNetworks/runs/subnets/default"
#: the VMs' user-assigned managed identity: its client id and resource id
VM_IDENTITY = "55555555-5555-5555-5555-555555555555"
VM_IDENTITY_ID = (
    f"{GROUP_PATH}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/stackmagic-vm"
)
VM_ROUTE = (
    r"/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)"
    r"/providers/Microsoft\.Compute/virtualMachines/(?P<name>[^/]+)"
)
OPERATION_ROUTE = (
    rf"/subscriptions/{SUBSCRIPTION}/providers/Microsoft\.Compute/locations/(?P<location>[^/]+)"
    r"/operations/(?P<operation>[^/]+)"
)
#: Azure's limit on custom data, decoded
CUSTOM_DATA_BYTES = 65535


@dataclass
class FakeArm(FakeAzure):
    #: who may create, read and delete VMs in the resource group
    vm_managers: set[str] = field(default_factory=lambda: {RUNNER, VM_IDENTITY})
    vault_readers: set[str] = field(default_factory=lambda: {VM_IDENTITY})
    vms: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: each VM's custom data, decoded: the startup script it runs
    custom_data: dict[str, str] = field(default_factory=dict)
    network_interfaces: set[str] = field(default_factory=set)
    public_ips: set[str] = field(default_factory=set)
    disks: set[str] = field(default_factory=set)
    #: the VMs whose DELETE arrived, in order
    deleted: list[str] = field(default_factory=list)
    #: (status, code, message) the next create is refused with at once
    refuse_create: tuple[int, str, str] | None = None
    #: (code, message) the next create's operation fails with
    fail_create: tuple[str, str] | None = None
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Answer:
        routes: dict[tuple[str, str], Callable[..., Answer]] = {
            ("PUT", VM_ROUTE): self._put_vm,
            ("GET", VM_ROUTE): self._get_vm,
            ("DELETE", VM_ROUTE): self._delete_vm,
            ("GET", OPERATION_ROUTE): self._operation,
        }
        for (verb, pattern), route in routes.items():
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                refusal = self._refused(headers, query, self.url, self.vm_managers, path)
                if refusal:
                    return refusal
                groups = match.groupdict()
                if groups.get("subscription", SUBSCRIPTION) != SUBSCRIPTION:
                    return _error(404, "SubscriptionNotFound", "The subscription was not found.")
                if groups.pop("group", RESOURCE_GROUP) != RESOURCE_GROUP:
                    return _error(404, "ResourceGroupNotFound", "Resource group not found.")
                groups.pop("subscription", None)
                return route(query=query, body=body, **groups)
        return super().handle(method, path, query, headers, body)

    def evict(self, name: str) -> None:
        """Take a Spot VM back, as Azure does: deleted, or deallocated, as its policy says."""
        properties = self.vms[name]["properties"]
        assert properties.get("priority") == "Spot", name
        if properties["evictionPolicy"] == "Delete":
            self._remove(name)
        else:
            properties["powerState"] = "deallocated"

    # -- virtual machines -----------------------------------------------------------------------

    def _put_vm(self, name: str, body: bytes, **_: Any) -> Answer:
        if self.refuse_create:
            (status, code, message), self.refuse_create = self.refuse_create, None
            return _error(status, code, message)
        if name in self.vms:
            return _error(409, "OperationNotAllowed", f"The VM {name} exists already.")
        try:
            vm = json.loads(body)
        except ValueError:
            return _error(400, "InvalidRequestContent", "The request content is not JSON.")
        refusal = vm_refusal(name, vm)
        if refusal:
            return _error(400, "InvalidParameter", refusal)
        properties = vm["properties"]
        self.custom_data[name] = base64.b64decode(properties["osProfile"]["customData"]).decode()
        vm.update(
            id=f"{GROUP_PATH}/providers/Microsoft.Compute/virtualMachines/{name}",
            name=name,
            type="Microsoft.Compute/virtualMachines",
        )
        properties.update(provisioningState="Creating", vmId=str(uuid.uuid4()))
        self.vms[name] = vm
        for nic in properties["networkProfile"]["networkInterfaceConfigurations"]:
            self.network_interfaces.add(nic["name"])
            for ip in nic["properties"]["ipConfigurations"]:
                public = ip["properties"].get("publicIPAddressConfiguration")
                if public:
                    self.public_ips.add(public["name"])
        self.disks.add(properties["storageProfile"]["osDisk"]["name"])
        failure, self.fail_create = self.fail_create, None
        return self._started(201, self._shown(vm), name, failure)

    def _get_vm(self, name: str, query: Mapping[str, list[str]], **_: Any) -> Answer:
        if name not in self.vms:
            return _error(404, "ResourceNotFound", f"The VM '{name}' was not found.")
        shown = self._shown(self.vms[name])
        if query.get("$expand") == ["instanceView"]:
            state = self.vms[name]["properties"]
            statuses = [{"code": f"ProvisioningState/{state['provisioningState'].lower()}"}]
            if state.get("powerState"):
                statuses.append({"code": f"PowerState/{state['powerState']}"})
            shown["properties"]["instanceView"] = {"statuses": statuses}
        return 200, shown, {}

    def _delete_vm(self, name: str, **_: Any) -> Answer:
        if name not in self.vms:
            return 204, None, {}
        self.deleted.append(name)  # Azure goes on deleting it whether or not it is asked after
        self._remove(name)
        return self._started(202, None, name, None)

    def _remove(self, name: str) -> None:
        """The VM is gone, and what it made that is marked to go with it."""
        properties = self.vms.pop(name)["properties"]
        for nic in properties["networkProfile"]["networkInterfaceConfigurations"]:
            if nic["properties"].get("deleteOption") == "Delete":
                self.network_interfaces.discard(nic["name"])
            for ip in nic["properties"]["ipConfigurations"]:
                public = ip["properties"].get("publicIPAddressConfiguration") or {}
                if (public.get("properties") or {}).get("deleteOption") == "Delete":
                    self.public_ips.discard(public["name"])
        disk = properties["storageProfile"]["osDisk"]
        if disk.get("deleteOption") == "Delete":
            self.disks.discard(disk["name"])

    @staticmethod
    def _shown(vm: dict[str, Any]) -> dict[str, Any]:
        shown = json.loads(json.dumps(vm))
        shown["properties"].pop("powerState", None)
        return dict(shown)

    # -- long-running operations ----------------------------------------------------------------

    def _started(
        self,
        status: int,
        payload: Any,
        name: str,
        failure: tuple[str, str] | None,
    ) -> Answer:
        operation = str(uuid.uuid4())
        self.operations[operation] = {"vm": name, "failure": failure}
        url = (
            f"{self.url}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Compute/locations/"
            f"{LOCATION}/operations/{operation}?api-version=2024-07-01"
        )
        headers = {"azure-asyncoperation": url, "retry-after": "1"}
        if status == 202:
            headers["location"] = url
        return status, payload, headers

    def _operation(self, operation: str, **_: Any) -> Answer:
        """Ended once asked: the VM is made (or failed to be made)."""
        if operation not in self.operations:
            return _error(404, "NotFound", f"The operation {operation} was not found.")
        work = self.operations[operation]
        answer: dict[str, Any] = {"name": operation, "status": "Succeeded"}
        vm = self.vms.get(work["vm"])
        if work["failure"]:
            code, message = work["failure"]
            answer.update(status="Failed", error={"code": code, "message": message})
            if vm is not None:
                vm["properties"]["provisioningState"] = "Failed"
        elif vm is not None and vm["properties"]["provisioningState"] == "Creating":
            vm["properties"].update(provisioningState="Succeeded", powerState="running")
        return 200, answer, {}


def vm_refusal(name: str, vm: Any) -> str | None:
    """Why Resource Manager refuses to create this VM (its first bad field)."""
    if not isinstance(vm, dict):
        return "The request body must be a VM."
    return (
        _unknown("", vm, {"location", "tags", "identity", "properties"}, {"location"})
        or (None if vm["location"] == LOCATION else f"location {vm['location']!r}: {_IN}")
        or _tags_refusal(vm.get("tags", {}))
        or _identity_refusal(vm.get("identity"))
        or _properties_refusal(name, vm.get("properties"))
    )


_IN = f"the subnet is in {LOCATION}"
_PROPERTIES = {
    "hardwareProfile",
    "storageProfile",
    "osProfile",
    "networkProfile",
    "priority",
    "evictionPolicy",
    "billingProfile",
}


def _unknown(where: str, value: Any, allowed: set[str], required: set[str]) -> str | None:
    """An unknown or missing field of an object."""
    if not isinstance(value, dict):
        return f"'{where or 'body'}' must be an object."
    for key in value:
        if key not in allowed:
            return f"Could not find member '{key}' on object of type '{where or 'VirtualMachine'}'."
    for key in sorted(required - set(value)):
        return f"Required parameter '{where + '.' if where else ''}{key}' is missing (null)."
    return None


def _tags_refusal(tags: Any) -> str | None:
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        return "tags must map names to strings."
    if len(tags) > 50:
        return "A resource has at most 50 tags."
    return None


def _identity_refusal(identity: Any) -> str | None:
    if identity is None:
        return None
    refusal = _unknown("identity", identity, {"type", "userAssignedIdentities"}, {"type"})
    if refusal:
        return refusal
    if identity["type"] != "UserAssigned":
        return f"identity.type {identity['type']!r}: this fake's VMs take a UserAssigned one."
    assigned = identity.get("userAssignedIdentities")
    if not isinstance(assigned, dict) or not assigned:
        return "A UserAssigned identity needs userAssignedIdentities."
    for resource, value in assigned.items():
        if resource != VM_IDENTITY_ID or value != {}:
            return f"The user-assigned identity {resource!r} was not found."
    return None


def _properties_refusal(name: str, properties: Any) -> str | None:
    return (
        _unknown("properties", properties, _PROPERTIES, _PROPERTIES - _SPOT)
        or _size_refusal(properties["hardwareProfile"])
        or _storage_refusal(properties["storageProfile"])
        or _os_refusal(name, properties["osProfile"])
        or _network_refusal(properties["networkProfile"])
        or _spot_refusal(properties)
    )


_SPOT = {"priority", "evictionPolicy", "billingProfile"}
_STORAGE = {"imageReference", "osDisk"}
_NAMED = {"name", "properties"}


def _size_refusal(hardware: Any) -> str | None:
    refusal = _unknown("hardwareProfile", hardware, {"vmSize"}, {"vmSize"})
    if refusal or re.fullmatch(r"Standard_[A-Za-z0-9_]+", str(hardware["vmSize"])):
        return refusal
    return f"The VM size {hardware['vmSize']!r} is not available in {LOCATION}."


def _storage_refusal(storage: Any) -> str | None:
    refusal = _unknown("storageProfile", storage, _STORAGE, _STORAGE)
    if refusal:
        return refusal
    image = storage.get("imageReference")
    fields = {"publisher", "offer", "sku", "version"}
    if not isinstance(image, dict) or not (
        set(image) == {"id"} or (set(image) == fields and all(image.values()))
    ):
        return f"imageReference {image!r} needs an id or publisher, offer, sku and version."
    disk = storage.get("osDisk", {})
    refusal = _unknown(
        "osDisk", disk, {"name", "createOption", "diskSizeGB", "deleteOption"}, {"createOption"}
    )
    if refusal:
        return refusal
    if disk["createOption"] != "FromImage":
        return f"osDisk.createOption {disk['createOption']!r}: a VM from an image needs FromImage."
    if not isinstance(disk.get("diskSizeGB", 30), int) or not 30 <= disk.get("diskSizeGB", 30):
        return "osDisk.diskSizeGB must be at least the image's size, 30 GB."
    return _delete_option("osDisk", disk)


def _delete_option(where: str, value: dict[str, Any]) -> str | None:
    if value.get("deleteOption", "Detach") in ("Delete", "Detach"):
        return None
    return f"{where}.deleteOption {value['deleteOption']!r} is not one of Delete, Detach."


def _os_refusal(name: str, os_profile: Any) -> str | None:
    allowed = {"computerName", "adminUsername", "customData", "linuxConfiguration"}
    refusal = _unknown("osProfile", os_profile, allowed, allowed)
    if refusal:
        return refusal
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9-]{0,63}", os_profile["computerName"]):
        return f"osProfile.computerName {os_profile['computerName']!r} is no Linux host name."
    if os_profile["adminUsername"] in ("root", "admin", "administrator", "user"):
        return f"osProfile.adminUsername {os_profile['adminUsername']!r} is not allowed."
    try:
        custom = base64.b64decode(os_profile["customData"], validate=True)
    except (binascii.Error, ValueError):
        return "osProfile.customData must be base64."
    if len(custom) > CUSTOM_DATA_BYTES:
        return f"osProfile.customData holds at most {CUSTOM_DATA_BYTES} bytes."
    linux = os_profile["linuxConfiguration"]
    refusal = _unknown("linuxConfiguration", linux, {"disablePasswordAuthentication", "ssh"}, set())
    if refusal:
        return refusal
    keys = ((linux.get("ssh") or {}).get("publicKeys")) or []
    if linux.get("disablePasswordAuthentication") is not True or not keys:
        return "Authentication using either SSH or by user name and password must be enabled."
    authorized = f"/home/{os_profile['adminUsername']}/.ssh/authorized_keys"
    for key in keys:
        if key.get("path") != authorized:
            return f"An SSH key's path must be {authorized}."
        if not str(key.get("keyData")).startswith(("ssh-rsa ", "ssh-ed25519 ")):
            return "An SSH public key must be in the OpenSSH format (ssh-rsa ...)."
    return None


def _network_refusal(network: Any) -> str | None:
    refusal = _unknown(
        "networkProfile",
        network,
        {"networkApiVersion", "networkInterfaceConfigurations"},
        {"networkApiVersion", "networkInterfaceConfigurations"},
    )
    if refusal:
        return refusal
    if network["networkApiVersion"] < "2020-11-01":
        return "networkInterfaceConfigurations need networkApiVersion 2020-11-01 or later."
    nics = network["networkInterfaceConfigurations"]
    if not isinstance(nics, list) or len(nics) != 1:
        return "This fake's VMs have exactly one network interface."
    nic = nics[0]
    refusal = _unknown("networkInterfaceConfiguration", nic, _NAMED, _NAMED)
    allowed = {"primary", "deleteOption", "ipConfigurations"}
    refusal = refusal or _unknown(
        "nic.properties", nic["properties"], allowed, {"ipConfigurations"}
    )
    if refusal:
        return refusal
    ips = nic["properties"]["ipConfigurations"]
    if not isinstance(ips, list) or len(ips) != 1:
        return "A network interface here has exactly one IP configuration."
    ip = ips[0]
    refusal = _delete_option("networkInterfaceConfiguration", nic["properties"]) or _unknown(
        "ipConfiguration", ip, _NAMED, _NAMED
    )
    allowed = {"subnet", "primary", "publicIPAddressConfiguration"}
    refusal = refusal or _unknown(
        "ipConfiguration.properties", ip["properties"], allowed, {"subnet"}
    )
    if refusal:
        return refusal
    subnet = ip["properties"]["subnet"]
    if subnet != {"id": SUBNET}:
        return f"Resource {subnet!r} referenced by the VM's network interface was not found."
    public = ip["properties"].get("publicIPAddressConfiguration")
    return _public_ip_refusal(public) if public is not None else None


def _public_ip_refusal(public: Any) -> str | None:
    refusal = _unknown(
        "publicIPAddressConfiguration", public, {"name", "sku", "properties"}, {"name"}
    )
    if refusal:
        return refusal
    sku = public.get("sku", {"name": "Basic"})
    properties = public.get("properties", {})
    refusal = _unknown("sku", sku, {"name", "tier"}, {"name"}) or _unknown(
        "publicIPAddressConfiguration.properties",
        properties,
        {"deleteOption", "publicIPAllocationMethod"},
        set(),
    )
    if refusal:
        return refusal
    if sku["name"] == "Standard" and properties.get("publicIPAllocationMethod") != "Static":
        return "A Standard SKU public IP address must use the Static allocation method."
    return _delete_option("publicIPAddressConfiguration", properties)


def _spot_refusal(properties: dict[str, Any]) -> str | None:
    priority = properties.get("priority", "Regular")
    if priority not in ("Regular", "Low", "Spot"):
        return f"priority {priority!r} is not one of Regular, Low, Spot."
    if priority == "Regular":
        if "evictionPolicy" in properties or "billingProfile" in properties:
            return "evictionPolicy and billingProfile are for Spot VMs only."
        return None
    if properties.get("evictionPolicy") not in ("Delete", "Deallocate"):
        return "A Spot VM needs an evictionPolicy, Delete or Deallocate."
    billing = properties.get("billingProfile", {"maxPrice": -1})
    refusal = _unknown("billingProfile", billing, {"maxPrice"}, {"maxPrice"})
    if refusal:
        return refusal
    price = billing["maxPrice"]
    if not isinstance(price, int | float) or (price != -1 and price <= 0):
        return f"billingProfile.maxPrice {price!r} must be -1 or a price above 0."
    return None
