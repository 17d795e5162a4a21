"""What JSON can keep: runs are recorded and shown as JSON, which has no NaN or infinity."""

from __future__ import annotations

import math
from typing import Any


def is_finite(value: Any) -> bool:
    """Whether ``value`` holds no NaN or infinity, however deep in lists, tuples and dicts."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple | set | frozenset):
        return all(is_finite(item) for item in value)
    if isinstance(value, dict):
        return all(is_finite(item) for item in value.values())
    return True
