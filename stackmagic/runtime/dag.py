"""Which steps come before and after a step, following the DAG's edges."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..notebook.exporter import BundleStep


def upstream(steps: Mapping[str, BundleStep], name: str) -> list[str]:
    """Every step ``name`` depends on, directly or through others, in the pipeline's order."""
    found = _reachable(name, lambda step: steps[step].upstream)
    return [step for step in steps if step in found]


def downstream(steps: Mapping[str, BundleStep], name: str) -> set[str]:
    """Every step that depends on ``name``, directly or through others."""
    children: dict[str, list[str]] = {step: [] for step in steps}
    for step, spec in steps.items():
        for parent in spec.upstream:
            children[parent].append(step)
    return _reachable(name, children.__getitem__)


def _reachable(start: str, neighbours: Callable[[str], list[str]]) -> set[str]:
    found: set[str] = set()
    frontier = [start]
    while frontier:
        for step in neighbours(frontier.pop()):
            if step not in found:
                found.add(step)
                frontier.append(step)
    return found
