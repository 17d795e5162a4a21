"""Modules that cost more to import than to use: loaded when first used, not when imported.

``rfc3987_syntax`` builds some thirty Lark parsers as it is imported: 0.7 s of
CPU, half of what importing papermill costs. jsonschema imports it to check
the ``iri`` format, nbformat imports jsonschema, and papermill imports nbformat;
a pipeline run never checks an IRI. :func:`defer` puts a stand-in under the
module's name: the functions named are there at once (jsonschema takes
``is_valid_syntax`` as it is imported), and the first call, or any other
attribute, loads the real module, which then takes its own name back.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from collections.abc import Callable, Iterable
from typing import Any

_LOADING = threading.Lock()


class _StandIn(types.ModuleType):
    """A module not loaded yet: every attribute it lacks comes from the real one."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # what the import system asks (``__path__``): not loaded yet
            raise AttributeError(name)
        return getattr(_load(self.__name__), name)


def defer(name: str, functions: Iterable[str]) -> None:
    """Have ``name`` loaded when first used; nothing happens if it is loaded or not installed."""
    if name in sys.modules or importlib.util.find_spec(name) is None:
        return
    stand_in = _StandIn(name)
    for function in functions:
        setattr(stand_in, function, _calling(name, function))
    sys.modules[name] = stand_in


def _calling(module: str, function: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(_load(module), function)(*args, **kwargs)

    call.__name__ = call.__qualname__ = function
    return call


def _load(name: str) -> types.ModuleType:
    with _LOADING:
        if isinstance(sys.modules.get(name), _StandIn):
            del sys.modules[name]
        return importlib.import_module(name)


def defer_slow_imports() -> None:
    """What a pipeline run defers before importing papermill."""
    defer("rfc3987_syntax", ["is_valid_syntax"])
