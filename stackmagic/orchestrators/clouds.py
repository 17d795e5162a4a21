"""The clouds a VM orchestrator starts machines in: one interface, one class per cloud.

The launcher uses an instance (made from the orchestrator's options); the VM,
which has only its launch description, uses the static methods of the class
its ``machine["cloud"]`` names.
"""

from __future__ import annotations

import abc
from typing import Any, Generic, TypeVar

from ..errors import StackmagicError

ConfigT = TypeVar("ConfigT")


class VMCloud(abc.ABC, Generic[ConfigT]):
    """Starting, watching and deleting one machine for a run, in one cloud."""

    cloud: str  # the name a launch description gives
    image_option: str  # the option naming a VM image with Python and stackmagic
    secret_manager: str  # where the stores' secrets wait for the VM

    def __init__(self, config: ConfigT) -> None:
        self.config = config

    @abc.abstractmethod
    def image_has_python(self) -> bool:
        """Whether the VM image runs the runtime directly, without --image."""

    @abc.abstractmethod
    def machine(self, run_id: str, attempt: int) -> dict[str, Any]:
        """How the VM of one try is found: JSON, kept in its launch description."""

    @abc.abstractmethod
    def launch_request(
        self,
        machine: dict[str, Any],
        script: str,
        *,
        look_up: bool = True,
    ) -> dict[str, Any]:
        """The cloud's request; ``look_up=False`` asks the cloud nothing (a dry run)."""

    @abc.abstractmethod
    def launch(self, machine: dict[str, Any], request: dict[str, Any]) -> tuple[str, str]:
        """Start the machine: its instance id and console URL."""

    @abc.abstractmethod
    def state(self, machine: dict[str, Any], instance: str) -> str:
        """``running`` or ``ended``."""

    @abc.abstractmethod
    def delete(self, machine: dict[str, Any], instance: str) -> None:
        """Delete a machine the launcher started (when its run could not be recorded)."""

    @staticmethod
    @abc.abstractmethod
    def describe(machine: dict[str, Any]) -> str:
        """The machine in a few words, for the VM's log."""

    @staticmethod
    @abc.abstractmethod
    def read_secret(machine: dict[str, Any], name: str) -> str:
        """A secret's text, read on the VM with the VM's own identity."""

    @staticmethod
    @abc.abstractmethod
    def delete_self(machine: dict[str, Any]) -> None:
        """Delete the VM this runs on."""


def for_machine(machine: dict[str, Any]) -> type[VMCloud[Any]]:
    """The cloud a launch description names."""
    cloud = machine.get("cloud")
    if cloud == "aws":
        from .aws_vm import EC2

        return EC2
    if cloud == "azure":
        from .azure_vm import AzureVM

        return AzureVM
    if cloud == "gcp":
        from .gcp_vm import ComputeEngine

        return ComputeEngine
    raise StackmagicError(
        f"the launch description names no cloud this stackmagic knows ({cloud!r}): install the "
        "stackmagic that launched the run in the VM's image"
    )
