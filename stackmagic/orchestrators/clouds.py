"""The clouds a VM orchestrator starts machines in, by the name a launch description gives."""

from __future__ import annotations

from typing import Any

from ..errors import StackmagicError


def for_machine(machine: dict[str, Any]) -> Any:
    """The class whose static methods a VM uses on itself: describe, read_secret, delete_self."""
    cloud = machine.get("cloud")
    if cloud == "aws":
        from .aws_vm import EC2

        return EC2
    if cloud == "gcp":
        from .gcp_vm import ComputeEngine

        return ComputeEngine
    raise StackmagicError(
        f"the launch description names no cloud this stackmagic knows ({cloud!r}): install the "
        "stackmagic that launched the run in the VM's image"
    )
