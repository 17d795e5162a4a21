"""Step operators: one step of a run as a job on a backend of its own.

Each flavor's backend is a module here with a ``BACKEND`` class on the one
interface of :mod:`.base`; :mod:`.driving` runs a step through it where the
pipeline runs, and ``python -m stackmagic.runtime job`` is what the job runs.
A flavor another package declares names its own module.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..component_type import ComponentType
from ..flavors import StepOperatorConfig, as_kind, get_flavor
from .base import StepOperator


def backend_class(flavor: str) -> type[StepOperator[Any]]:
    """The backend a job's description names, for the job to read its secrets with."""
    config = as_kind(get_flavor(ComponentType.STEP_OPERATOR, flavor)(), StepOperatorConfig)
    backend: type[StepOperator[Any]] = importlib.import_module(config.module).BACKEND
    return backend
