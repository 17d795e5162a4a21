"""What runs inside a step's kernel: load its inputs, save its outputs, log its metrics.

The cells a step's notebook gets around the user's code call these. Results go
back to the runtime as one display output of a custom MIME type, so nothing
but the executed notebook passes between the kernel and the runtime. Light to
import: fsspec, and the materializer a value needs.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

from .errors import StackmagicError
from .output import human_size
from .stores.artifacts import ArtifactInfo

#: The MIME type of the outputs cell's result, read back by the runtime.
RESULT_MIME_TYPE = "application/vnd.stackmagic.step-result+json"

#: What ``log_metric`` was given: name, value, step (or None) and when, in seconds since the epoch.
_metrics: list[tuple[str, float, int | None, float]] = []
#: Files this kernel opened for writing, as absolute paths (see ``watch_files``).
_written: set[str] = set()
_WRITING = os.O_WRONLY | os.O_RDWR


_watching = False


def watch_files() -> None:
    """Note the files this kernel writes from now on, through Python's audit events.

    The runtime compares the folder before and after a step; when other steps
    ran beside it in the same folder, what this kernel wrote tells whose a file is.
    """
    global _watching
    if not _watching:
        sys.addaudithook(_note_written)
        _watching = True


def take_written() -> list[str]:
    """The files noted as written so far, forgotten from now on: what a setup wrote."""
    taken = sorted(_written)
    _written.clear()
    return taken


def _note_written(event: str, arguments: tuple[Any, ...]) -> None:
    if event == "open":
        path, _, flags = arguments
        if isinstance(path, str | bytes | os.PathLike) and flags & _WRITING:
            _written.add(os.path.abspath(os.fsdecode(path)))
    elif event in ("os.rename", "shutil.copyfile"):  # os.replace raises os.rename
        _written.add(os.path.abspath(os.fsdecode(arguments[1])))


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Record a number for this step run (accuracy, loss...); outside a pipeline it is only kept here.

    ``step`` orders a series of values of one metric (an epoch, an iteration), as experiment
    trackers plot them; without it, values keep the order they were logged in.
    """
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
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise TypeError(f"metric {name!r}: step must be a whole number of 0 or more, not {step!r}")
    _metrics.append((name, number, step, time.time()))


def metrics_summary(logged: Iterable[tuple[str, float]]) -> str:
    """Each metric's last value, and how many values it has where it logged a series."""
    values: dict[str, list[float]] = {}
    for name, value in logged:
        values.setdefault(name, []).append(value)
    return ", ".join(
        f"{name}={series[-1]:g}" + (f" (last of {len(series)})" if len(series) > 1 else "")
        for name, series in values.items()
    )


def load_input(context: Mapping[str, Any], name: str) -> Any:
    store = _store(context)
    return store.load(context["inputs"][name]["uri"])


def save_outputs(
    context: Mapping[str, Any],
    namespace: Mapping[str, Any],
    names: Sequence[str],
    results: Sequence[str] = (),
    watched: Sequence[str] = (),
) -> None:
    """Save the outputs later steps read (all must exist) and a final step's results.

    An output that is also an input (the step may have changed it in place)
    and is unchanged is passed on by reference: the input's artifact, not a
    copy. ``watched`` inputs, which the code is not seen to change, are
    checked, so a change no analysis could see is reported, never silent.
    Results are what a final step binds: those still defined, modules (imports) aside.
    """
    missing = [name for name in names if name not in namespace]
    if missing:
        readers = context.get("readers", {})
        raise NameError(
            "; ".join(
                f"this step did not define {name!r}, which step "
                f"{', '.join(repr(r) for r in readers.get(name, [])) or 'a later step'} reads"
                for name in missing
            )
        )
    store = _store(context)
    received = {name: ArtifactInfo.from_json(info) for name, info in context["inputs"].items()}
    saved, unchanged = {}, []
    for name in names:
        if name in received and _unchanged(namespace[name], received[name]):
            saved[name] = received[name]
            unchanged.append(name)
        else:
            saved[name] = store.save(namespace[name], f"{context['outputs']}/{name}")
    not_kept = []
    for name in results:
        if name not in namespace or isinstance(namespace[name], ModuleType):
            continue
        try:
            saved[name] = store.save(namespace[name], f"{context['outputs']}/{name}")
        except StackmagicError:  # an open file, a lock, a connection: not a result to keep
            not_kept.append(name)
    unseen = [
        name
        for name in watched
        if name in namespace
        and name in received
        and not _unchanged(namespace[name], received[name])
    ]
    from IPython.display import display

    summary = ", ".join(
        f"{name} (unchanged)"
        if name in unchanged
        else f"{name} ({info.materializer}, {human_size(info.size)})"
        for name, info in saved.items()
    )
    metrics = metrics_summary((name, value) for name, value, *_ in _metrics)
    text = f"Saved {summary or 'no outputs'}" + (f"; metrics: {metrics}" if metrics else "")
    if not_kept:
        text += f"; not kept (cannot be saved): {', '.join(not_kept)}"
    warnings = [
        f"step {context['step']!r} changed {name!r} in place in a way its code does not "
        f"show, so later steps get {name!r} as this step received it, unlike the notebook; "
        f"assign it again in this step (`{name} = ...`) to pass the change on"
        for name in unseen
    ]
    display(
        {
            "text/plain": "\n".join([text, *(f"warning: {w}" for w in warnings)]),
            RESULT_MIME_TYPE: {
                "outputs": {name: info.to_json() for name, info in saved.items()},
                "metrics": [list(metric) for metric in _metrics],
                "warnings": warnings,
                "written": sorted(_written),
            },
        },
        raw=True,
    )


def _unchanged(value: Any, received: ArtifactInfo) -> bool:
    """Whether ``value`` would be stored as the same bytes as the input it came from."""
    from .stores.content import fingerprint

    try:
        return fingerprint(value) == received.content_hash
    except StackmagicError:  # it cannot be stored at all: saving it says so
        return False


def _store(context: Mapping[str, Any]) -> Any:
    from .stores.artifacts import ArtifactStore

    return ArtifactStore.from_description(context["store"])
