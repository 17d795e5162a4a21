"""Choosing a machine type for a step: the smallest of a backend's list that fits its request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import StackmagicError
from .base import Resources


@dataclass(frozen=True)
class Machine:
    name: str
    cpus: float
    memory_gib: float
    gpus: int = 0

    def fits(self, resources: Resources) -> bool:
        return (
            (resources.cpu is None or self.cpus >= resources.cpu)
            and (resources.memory_gib is None or self.memory_gib >= resources.memory_gib)
            and self.gpus >= resources.gpu
            # a step that asks for no GPU gets none: GPU machines cost several times more
            and (resources.gpu > 0 or self.gpus == 0)
        )


def choose(
    catalog: Sequence[Machine], resources: Resources, pinned: str, *, step: str, option: str
) -> str:
    """The machine type for ``step``: ``pinned`` if it fits (or is one the list does not know),
    else the first of ``catalog`` (cheapest first) that fits; refused in one line otherwise."""
    fitting = [machine.name for machine in catalog if machine.fits(resources)]
    known = {machine.name: machine for machine in catalog}
    if pinned and (pinned not in known or pinned in fitting):
        return pinned
    if pinned:
        have = known[pinned]
        return _refuse(
            f"step {step!r} asks for {resources.asked()}, more than {option}={pinned} has "
            f"({have.cpus:g} CPUs, {have.memory_gib:g} GiB, {have.gpus} GPUs)",
            fitting,
            option,
        )
    if not fitting:
        return _refuse(f"step {step!r} asks for {resources.asked()}", fitting, option)
    return fitting[0]


def _refuse(problem: str, fitting: list[str], option: str) -> str:
    if fitting:
        shown = ", ".join(fitting[:8]) + (" ..." if len(fitting) > 8 else "")
        raise StackmagicError(f"{problem}; types that fit: {shown} (give one with {option})")
    raise StackmagicError(
        f"{problem}, which no machine type this stackmagic knows has; ask for less, or give "
        f"a type with {option}"
    )
