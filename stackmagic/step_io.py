"""What runs inside a step's kernel: load its inputs, save its outputs, log its metrics.

The cells a step's notebook gets around the user's code call these. Results go
back to the runtime as one display output of a custom MIME type, so nothing
but the executed notebook passes between the kernel and the runtime. Light to
import: fsspec, and the materializer a value needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from .errors import StackmagicError

#: The MIME type of the outputs cell's result, read back by the runtime.
RESULT_MIME_TYPE = "application/vnd.stackmagic.step-result+json"

_metrics: list[tuple[str, float]] = []


def log_metric(name: str, value: float) -> None:
    """Record a number for this step run (accuracy, loss...); outside a pipeline it is only kept here."""
    if not isinstance(name, str) or not name:
        raise ValueError("a metric needs a name: log_metric('accuracy', 0.93)")
    try:
        if isinstance(value, bool | str | bytes):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"metric {name!r} must be a number, not {type(value).__name__}") from None
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"metric {name!r} must be a finite number, not {number}")
    _metrics.append((name, number))


def load_input(context: Mapping[str, Any], name: str) -> Any:
    store = _store(context)
    return store.load(context["inputs"][name])


def save_outputs(
    context: Mapping[str, Any],
    namespace: Mapping[str, Any],
    names: Sequence[str],
    results: Sequence[str] = (),
) -> None:
    """Save the outputs later steps read (all must exist) and a final step's results.

    Results are what a final step binds: those still defined, modules (imports) aside.
    """
    missing = [name for name in names if name not in namespace]
    if missing:
        readers = context.get("readers", {})
        raise NameError(
            "; ".join(f"this step did not define {name!r}, which step "
                      f"{', '.join(repr(r) for r in readers.get(name, [])) or 'a later step'} reads"
                      for name in missing)
        )
    store = _store(context)
    saved = {name: store.save(namespace[name], f"{context['outputs']}/{name}") for name in names}
    not_kept = []
    for name in results:
        if name not in namespace or isinstance(namespace[name], ModuleType):
            continue
        try:
            saved[name] = store.save(namespace[name], f"{context['outputs']}/{name}")
        except StackmagicError:  # an open file, a lock, a connection: not a result to keep
            not_kept.append(name)
    from IPython.display import display

    summary = ", ".join(f"{name} ({info.materializer}, {_size(info.size)})" for name, info in saved.items())
    metrics = ", ".join(f"{name}={value:g}" for name, value in _metrics)
    text = f"Saved {summary or 'no outputs'}" + (f"; metrics: {metrics}" if metrics else "")
    if not_kept:
        text += f"; not kept (cannot be saved): {', '.join(not_kept)}"
    display({
        "text/plain": text,
        RESULT_MIME_TYPE: {
            "outputs": {name: info.to_json() for name, info in saved.items()},
            "metrics": [list(metric) for metric in _metrics],
        },
    }, raw=True)


def _store(context: Mapping[str, Any]) -> Any:
    from .stores.artifacts import ArtifactStore

    return ArtifactStore.from_description(context["store"])


def _size(size: float) -> str:
    if size < 1000:
        return f"{size:.0f} B"
    for unit in ("kB", "MB"):
        size /= 1000
        if size < 1000:
            return f"{size:.1f} {unit}"
    return f"{size / 1000:.1f} GB"
