"""A run's parameters as given: checked against the notebook's, read from the command line."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import StackmagicError
from .json_values import is_finite


def check_parameters(
    names: Iterable[str], given: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """The overrides, if each names a parameter (a name the ``parameters`` cell binds) and
    is of a kind its default can be: text for a number would fail a step, not the start."""
    names = list(names)
    unknown = sorted(set(given) - set(names))
    if unknown:
        known = ", ".join(names) or "none (tag a cell `parameters` to give it some)"
        raise StackmagicError(
            f"the pipeline has no parameter {', '.join(map(repr, unknown))} (parameters: {known})"
        )
    for name, value in given.items():
        _check_kind(name, value, defaults)
        if not is_finite(value):
            raise StackmagicError(
                f"parameter {name!r} holds {value!r}, which JSON cannot keep (runs are recorded "
                "and shown as JSON); give finite numbers"
            )
    return dict(given)


def parse_parameter(text: str) -> Any:
    """``-p lr 0.2`` gives 0.2, ``-p name abc`` gives "abc": a Python literal, else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _check_kind(name: str, value: Any, defaults: Mapping[str, Any]) -> None:
    """A number or a boolean in the notebook takes no text; a boolean takes only a boolean."""
    if name not in defaults:
        return
    default = defaults[name]
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise StackmagicError(
                f"parameter {name!r} is True or False in the notebook ({name} = {default!r}), "
                f"not {value!r}; give True or False"
            )
    elif isinstance(default, (int, float)) and isinstance(value, str):
        raise StackmagicError(
            f"parameter {name!r} is a number in the notebook ({name} = {default!r}), not the "
            f"text {value!r}; give a number"
        )
