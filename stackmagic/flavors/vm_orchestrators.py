"""Orchestrator flavors that run the whole pipeline on one cloud VM they start."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import traitlets as t

from ..errors import StackmagicError
from .base import OrchestratorConfig

if TYPE_CHECKING:
    from ..open_stack import OpenStack
    from ..orchestrators.base import Orchestrator


class VMOrchestrator(OrchestratorConfig):
    """Options shared by the cloud-VM flavors: the whole pipeline runs on one VM it starts."""

    image = t.Unicode(
        help="Container image the pipeline runs in (with stackmagic installed); empty runs "
        "python3 -m stackmagic.runtime directly on the VM image."
    )
    disk_size_gb = t.Int(100, help="Boot disk size in GB.")
    gpu_count = t.Int(0, help="Number of GPUs to attach.")
    keep_alive = t.Bool(False, help="Keep the VM after the run instead of deleting it.")
    retries = t.Int(
        0,
        help="How often a run whose VM was preempted is relaunched (with --wait); finished "
        "steps come from the cache.",
    )
    store_secret = t.Unicode(
        help="Secret in the cloud's secret manager holding the stores' secret options as JSON "
        '({"STACKMAGIC_METADATA_STORE_PASSWORD": ...}); the VM reads it when it starts.'
    )

    @property
    def runs_remotely(self) -> bool:
        return True

    @t.validate("retries", "gpu_count")
    def _check_count(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 0:
            raise t.TraitError("expects 0 or more")
        return proposal["value"]

    @t.validate("disk_size_gb")
    def _check_disk(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 10:
            raise t.TraitError("expects 10 GB or more")
        return proposal["value"]


class GCPVMOrchestrator(VMOrchestrator):
    """Runs the whole pipeline on a Compute Engine VM, optionally preemptible."""

    flavor = "gcp-vm"

    project = t.Unicode(help="Google Cloud project.").tag(required=True)
    region = t.Unicode("us-central1", help="Region.")
    zone = t.Unicode("us-central1-a", help="Zone.")
    machine_type = t.Unicode("n1-standard-4", help="Machine type.")
    boot_image = t.Unicode(
        "projects/cos-cloud/global/images/family/cos-stable", help="Boot disk image."
    )
    preemptible = t.Bool(False, help="Use a preemptible (spot) VM.")
    gpu_type = t.Unicode(help="Accelerator type, nvidia-tesla-t4 say.")
    service_account = t.Unicode(help="Service account e-mail the VM runs as.")
    network = t.Unicode(help="VPC network.")
    subnetwork = t.Unicode(help="Subnetwork.")
    labels = t.Dict(help="Labels for the VM, KEY=VALUE,KEY=VALUE.")
    api_endpoint = t.Unicode(help="Compute Engine API endpoint; default: Google's.")

    def orchestrator(self, stack: OpenStack) -> Orchestrator:
        from ..orchestrators.gcp_vm import ComputeEngine
        from ..orchestrators.vm import VMRunner

        return VMRunner(self, stack, ComputeEngine(self))

    def check(self) -> None:
        super().check()
        if self.gpu_count and not self.gpu_type:
            raise StackmagicError("--gpu-count needs --gpu-type (nvidia-tesla-t4, say)")


class AWSVMOrchestrator(VMOrchestrator):
    """Runs the whole pipeline on an EC2 instance, optionally spot."""

    flavor = "aws-vm"

    region = t.Unicode("us-east-1", help="AWS region.")
    instance_type = t.Unicode("m5.xlarge", help="EC2 instance type.")
    ami = t.Unicode(
        help="AMI id of the instance: one with Docker for --image, or with Python "
        "and stackmagic; default: the region's newest Deep Learning Base AMI."
    )
    spot = t.Bool(False, help="Use a spot instance.")
    instance_profile = t.Unicode(help="IAM instance profile the instance runs as.")
    subnet_id = t.Unicode(help="Subnet to start the instance in.")
    security_group_ids = t.List(t.Unicode(), help="Security groups, comma-separated.")
    tags = t.Dict(help="Tags for the instance, KEY=VALUE,KEY=VALUE.")
    endpoint_url = t.Unicode(help="EC2 and Secrets Manager API endpoint; default: AWS's.")

    def orchestrator(self, stack: OpenStack) -> Orchestrator:
        from ..orchestrators.aws_vm import EC2
        from ..orchestrators.vm import VMRunner

        return VMRunner(self, stack, EC2(self))


class AzureVMOrchestrator(VMOrchestrator):
    """Runs the whole pipeline on an Azure VM, optionally Spot."""

    flavor = "azure-vm"

    subscription_id = t.Unicode(help="Azure subscription id.").tag(required=True)
    resource_group = t.Unicode(help="Resource group the VM is made in.").tag(required=True)
    location = t.Unicode("eastus", help="Azure region of the VM (its subnet's).")
    subnet_id = t.Unicode(
        help="Subnet of the VM's network interface: /subscriptions/.../subnets/NAME."
    ).tag(required=True)
    managed_identity = t.Unicode(
        help="User-assigned managed identity the VM runs as (its resource id): it deletes the "
        "VM and reads --store-secret."
    ).tag(required=True)
    size = t.Unicode("Standard_D4s_v5", help="VM size.")
    vm_image = t.Unicode(
        help="VM image: a URN (PUBLISHER:OFFER:SKU:VERSION) or an image id, with Python and "
        "stackmagic; default: the Data Science VM (Ubuntu 22.04, Docker and NVIDIA drivers) "
        "for --image."
    )
    spot = t.Bool(False, help="Use a Spot VM.")
    eviction_policy = t.Enum(
        ["Delete", "Deallocate"], "Delete", help="What Azure does to an evicted Spot VM."
    )
    max_price = t.Float(
        -1.0,
        help="Highest price per hour in US dollars for a Spot VM; -1: the pay-as-you-go price.",
    )
    public_ip = t.Bool(
        True, help="Give the VM a public IP address (false: the subnet's NAT gives it the way out)."
    )
    ssh_public_key = t.Unicode(
        help="SSH public key of the VM's user azureuser; default: a new key nobody holds."
    )
    key_vault_url = t.Unicode(
        help="Key Vault (https://NAME.vault.azure.net) that holds --store-secret."
    )
    tags = t.Dict(help="Tags for the VM, KEY=VALUE,KEY=VALUE.")
    resource_manager_url = t.Unicode(
        "https://management.azure.com", help="Azure Resource Manager endpoint."
    )

    def orchestrator(self, stack: OpenStack) -> Orchestrator:
        from ..orchestrators.azure_vm import AzureVM
        from ..orchestrators.vm import VMRunner

        return VMRunner(self, stack, AzureVM(self))

    def check(self) -> None:
        super().check()
        if self.store_secret and not self.key_vault_url:
            raise StackmagicError(
                "--store-secret names a secret in Key Vault: give --key-vault-url "
                "(https://NAME.vault.azure.net)"
            )
        if self.max_price != -1 and self.max_price <= 0:
            raise StackmagicError(
                "--max-price is -1 (the pay-as-you-go price) or a price per hour above 0"
            )
        if self.gpu_count:
            raise StackmagicError(
                "the azure-vm orchestrator takes GPUs from --size (Standard_NC4as_T4_v3, say), "
                "not --gpu-count"
            )
        if self.vm_image and not _is_azure_image(self.vm_image):
            raise StackmagicError(
                f"--vm-image {self.vm_image!r} is no image: give PUBLISHER:OFFER:SKU:VERSION "
                "(Canonical:ubuntu-24_04-lts:server:latest, say) or an image's resource id"
            )
        if "/subnets/" not in self.subnet_id:
            raise StackmagicError(
                "--subnet-id is a subnet's resource id: /subscriptions/SUBSCRIPTION/resourceGroups/"
                "GROUP/providers/Microsoft.Network/virtualNetworks/NETWORK/subnets/NAME"
            )


def _is_azure_image(image: str) -> bool:
    """A URN (four non-empty parts) or the resource id of an image or gallery image version."""
    if image.startswith("/"):
        return "/providers/Microsoft.Compute/" in image
    return image.count(":") == 3 and all(image.split(":"))
