"""Whether a process can be forked safely now: what the template checks after the setup.

A fork takes along one thread, its memory and its open files. Threads of
Python's, and native pools that do not start again in a child (OpenMP's
above all), leave the fork waiting on locks no one will release; files,
connections and event loops would be shared by the forks, each moving the
others' position. OpenBLAS's pools, jemalloc's background thread, tqdm's
monitor and matplotlib's font files are known to be safe, or made so.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from typing import Any

#: Modules whose runtime cannot be forked once imported: their threads would not follow.
_UNFORKABLE = {"tensorflow": "TensorFlow", "jax": "JAX"}


def _stop_known_helpers() -> None:
    """Stop the helper threads of libraries that start them again when needed.

    tqdm's monitor thread, started by the setup's first progress bar, holds
    tqdm's lock at times: a fork made then would never get it. Stopped here,
    it starts again in a fork with the step's first bar.
    """
    monitors = sys.modules.get("tqdm._monitor")
    if monitors is None:
        return
    for thread in threading.enumerate():
        if isinstance(thread, monitors.TMonitor):
            thread.exit()
            thread.tqdm_cls.monitor = None


def _reopened_in_forks(path: str) -> bool:
    """Files that their library opens anew in a fork: matplotlib's fonts (it clears its font
    cache after a fork, so forks never share a font file's position)."""
    matplotlib = sys.modules.get("matplotlib")
    if matplotlib is None or "font_manager" not in dir(matplotlib):
        return False
    return path.startswith(os.path.join(matplotlib.get_data_path(), "fonts") + os.sep)


def unforkable(gui_event_loop: Any) -> str | None:
    """Why forking the template now would be unsafe, or None; ``gui_event_loop`` is the one
    the setup gave its kernel (``%matplotlib qt``), if any."""
    _stop_known_helpers()
    if gui_event_loop is not None:
        return "the setup started a GUI event loop"
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if threads:
        return f"the setup started threads ({', '.join(sorted(threads))})"
    for module, name in _UNFORKABLE.items():
        if module in sys.modules:
            return f"the setup imports {name}, whose runtime cannot be forked"
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch, "cuda", None) and torch.cuda.is_initialized():
        return "the setup started CUDA, which cannot be forked"
    native = _unexplained_native_threads()
    if native:
        return (
            f"the setup started {native} native thread{'s' if native > 1 else ''} "
            "(an OpenMP pool, say) that forks cannot take along"
        )
    kept = _open_files()
    if kept:
        shared = min(kept, key=_open_files_order)
        return f"the setup keeps {shared} open, which forked steps would share"
    return None


def _open_files() -> list[str]:
    """Files and connections this process holds beyond its standard streams."""
    kept = []
    try:
        descriptors = os.listdir("/proc/self/fd")
    except OSError:  # no /proc: nothing to tell
        return []
    for name in descriptors:
        if int(name) <= 2:
            continue
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the listing's own descriptor, closed by now
            continue
        if target == "anon_inode:[eventpoll]":
            kept.append("an event loop")
        elif target.startswith("socket:"):
            kept.append("a network connection")
        elif target.startswith("/") and not target.startswith("/dev/"):
            if not _reopened_in_forks(target):
                kept.append(target)
    return kept


def _unexplained_native_threads() -> int:
    """Threads below Python's sight that are not known to survive a fork.

    OpenBLAS starts its pool as numpy loads it and restarts it in a fork;
    jemalloc (pyarrow's) does likewise with its background thread. Any other
    pool, OpenMP's above all (scikit-learn's estimators, LightGBM, torch), hangs
    a fork that uses it once the parent has.
    """
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:  # no /proc: nothing to tell
        return 0
    known = 1 + sum(1 for t in threading.enumerate() if t is not threading.main_thread())
    known += sum(count - 1 for count in _openblas_pools())
    for thread in threads:
        with contextlib.suppress(OSError):
            if open(f"/proc/self/task/{thread}/comm").read().strip() == "jemalloc_bg_thd":
                known += 1
    return max(0, len(threads) - known)


def _openblas_pools() -> list[int]:
    """The size of the thread pool of each OpenBLAS this process loaded (numpy's, scipy's)."""
    sizes = []
    with open("/proc/self/maps") as maps:
        libraries = {line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1]}
    for library in sorted(libraries):
        with contextlib.suppress(OSError):
            loaded = ctypes.CDLL(library)
            for prefix in ("", "scipy_"):
                for suffix in ("", "64_"):
                    function = getattr(loaded, f"{prefix}openblas_get_num_threads{suffix}", None)
                    if function is not None:
                        sizes.append(int(function()))
                        break
                else:
                    continue
                break
    return sizes


def _open_files_order(what: str) -> int:
    """An event loop first: it holds connections of its own, which are not the setup's."""
    return 0 if what == "an event loop" else 1
