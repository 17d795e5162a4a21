"""The template of a run's step kernels: the setup runs here once, each step gets a fork of it.

``python -m stackmagic.orchestrators.template_kernel``, started with the
notebook kernel's own Python, in the run's folder. It reads requests from its
stdin and answers on its stdout, one JSON document a line:

* ``{"op": "setup", "cells": [SOURCE, ...], "seeded": [GENERATOR, ...]}``
  runs the setup cells (and the parameters) in IPython's kernel shell, as a
  kernel would, and answers with each cell's execution count, times and
  outputs (as the kernel's messages), and whether forking is safe now;
* ``{"op": "fork", "connection_file": PATH}`` forks: the child becomes an
  ordinary ipykernel on that connection file, holding everything the setup
  made (the very shell, so ``In``, ``Out``, magics and matplotlib's hooks
  too); the answer is its PID.

The template stays single-threaded, so forking it is safe; a child dies with
it (``PR_SET_PDEATHSIG``), and it dies with the run (see ``die_with_parent``).
Generators the setup does not seed are seeded afresh in each child, as a new
kernel would have them; one the setup seeds starts each step from that seed.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, TextIO

PR_SET_PDEATHSIG = 1
#: Modules whose runtime cannot be forked once imported: their threads would not follow.
_UNFORKABLE = {"tensorflow": "TensorFlow", "jax": "JAX"}


class _Recorder:
    """What the setup cells output, as the kernel's iopub messages would carry it."""

    def __init__(self) -> None:
        self.outputs: list[dict[str, Any]] = []

    def message(self, msg_type: str, content: dict[str, Any]) -> None:
        if msg_type == "clear_output":
            self.outputs.clear()
        elif msg_type in ("stream", "display_data", "execute_result", "error"):
            self.outputs.append({"header": {"msg_type": msg_type}, "content": content})

    def stream(self, name: str, text: str) -> None:
        last = self.outputs[-1] if self.outputs else None
        if last and last["header"]["msg_type"] == "stream" and last["content"]["name"] == name:
            last["content"]["text"] += text
        else:
            self.message("stream", {"name": name, "text": text})


class _Stream(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` while a setup cell runs, as ipykernel's stream."""

    def __init__(self, name: str, recorder: _Recorder) -> None:
        self.name_, self.recorder = name, recorder

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            self.recorder.stream(self.name_, text)
        return len(text)


def _recording_session(recorder: _Recorder) -> Any:
    """A jupyter_client session whose ``send`` records instead of sending: the shell's
    display hook and publisher build their messages exactly as in a kernel."""
    from jupyter_client.session import Session

    class RecordingSession(Session):
        def send(self, stream: Any, msg_or_type: Any, content: Any = None, parent: Any = None,
                 ident: Any = None, buffers: Any = None, track: bool = False, header: Any = None,
                 metadata: Any = None) -> Any:  # fmt: skip
            if isinstance(msg_or_type, dict):
                msg = msg_or_type
            else:
                msg = self.msg(msg_or_type, content, parent, header, metadata)
            recorder.message(msg["header"]["msg_type"], msg["content"])
            return msg

    return RecordingSession()


class _NoKernelYet:
    """The kernel, for the setup: each fork gets a real one.

    ``%matplotlib inline`` sets the kernel's event loop (to none); a setup that
    starts a GUI event loop, or needs anything else of a kernel, cannot be forked.
    """

    eventloop: Any = None


def _kernel_app() -> Any:
    """ipykernel's application, started in two halves: its shell here, its kernel in each fork."""
    from ipykernel.compiler import XCachingCompiler
    from ipykernel.kernelapp import IPKernelApp
    from ipykernel.zmqshell import ZMQInteractiveShell
    from IPython.core.application import BaseIPythonApplication

    class TemplateKernelApp(IPKernelApp):
        forked = False

        def prepare_shell(self, session: Any) -> Any:
            """The shell as the kernel would make it: the same profile, configuration and
            compiler; the startup files, extensions and ``exec_lines`` run, before the setup.
            Its output goes through ``session`` until a fork's kernel takes it over."""
            BaseIPythonApplication.initialize(self, [])
            self.config.HistoryManager.enabled = False  # its saving thread would block forking
            self.shell = ZMQInteractiveShell.instance(
                parent=self,
                profile_dir=self.profile_dir,
                user_ns={},
                compiler_class=XCachingCompiler,
            )
            for hook in (self.shell.displayhook, self.shell.display_pub):
                hook.session, hook.pub_socket = session, None  # type: ignore[union-attr]
            self.kernel = _NoKernelYet()
            self.init_gui_pylab()
            self.init_extensions()
            self.init_code()
            return self.shell

        def serve(self, connection_file: str) -> None:
            """In a fork: the rest of the kernel's start, on the shell the setup ran in."""
            shell, self.forked, self.kernel = self.shell, True, None
            self.initialize(["-f", connection_file])
            shell.kernel = self.kernel  # type: ignore[union-attr] # found the shell, not made it
            self.start()

        def init_gui_pylab(self) -> None:
            if not self.forked:
                super().init_gui_pylab()

        def init_extensions(self) -> None:
            if not self.forked:
                super().init_extensions()

        def init_code(self) -> None:
            if not self.forked:
                super().init_code()

    return TemplateKernelApp.instance()


class Template:
    """The setup's state, and the forks made from it."""

    def __init__(self) -> None:
        import ipykernel.debugger  # noqa: F401 - imported once here, not by every fork

        self.app = _kernel_app()
        self.recorder = _Recorder()
        self.shell = self.app.prepare_shell(_recording_session(self.recorder))
        self.seeded: set[str] = set()
        self.random_state: Any = None

    def setup(self, cells: list[str], seeded: list[str]) -> dict[str, Any]:
        self.seeded = set(seeded)
        done: list[dict[str, Any]] = []
        with self._recording():
            for source in cells:
                self.recorder.outputs = []
                started = _now()
                result = self.shell.run_cell(source, store_history=True)
                done.append(
                    {
                        "execution_count": result.execution_count,
                        "outputs": self.recorder.outputs,
                        "started": started,
                        "ended": _now(),
                    }
                )
                if not result.success:
                    error = result.error_in_exec or result.error_before_exec
                    said = f"{type(error).__name__}: {error}"
                    return {"cells": done, "failed": said}
        import random

        import stackmagic.step_io  # noqa: F401 - every step's first and last cells use it

        self.random_state = random.getstate()
        return {"cells": done, "failed": False, "unsafe": unforkable(self.app.kernel)}

    @contextlib.contextmanager
    def _recording(self) -> Iterator[None]:
        """Python's output goes to the recorder, as a kernel's goes to its IOPub channel."""
        real = sys.stdout, sys.stderr
        sys.stdout = _Stream("stdout", self.recorder)
        sys.stderr = _Stream("stderr", self.recorder)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = real

    def fork(self, connection_file: str, channel: tuple[TextIO, TextIO]) -> int:
        parent = os.getpid()
        pid = os.fork()
        if pid:
            return pid
        try:  # the child: never returns into the template's loop
            for stream in channel:
                stream.close()
            _die_with(parent)
            os.setpgid(0, 0)  # its own process group: signals for it reach its subprocesses too
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self._seed_as_a_new_kernel()
            self.app.serve(connection_file)
        except BaseException:
            import traceback

            traceback.print_exc(file=sys.__stderr__)  # the log, whatever sys.stderr is now
            os._exit(1)
        os._exit(0)

    def _seed_as_a_new_kernel(self) -> None:
        """Generators the setup seeds start from that seed; the others are seeded afresh."""
        import random

        if "random" in self.seeded:  # Python reseeds it in every child: undo that
            random.setstate(self.random_state)
        if "numpy.random" not in self.seeded and "numpy.random" in sys.modules:
            sys.modules["numpy.random"].seed()
        if "torch" not in self.seeded and "torch" in sys.modules:
            sys.modules["torch"].seed()


def unforkable(kernel: Any) -> str | None:
    """Why forking the template now would be unsafe, or None."""
    if kernel.eventloop is not None:
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


def _die_with(parent: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def main() -> None:
    # The requests come on stdin and the answers go on stdout; the code's own
    # output, below the Python level too, goes to stderr (the kernels' log).
    requests = os.fdopen(os.dup(0), "r")
    answers = os.fdopen(os.dup(1), "w")
    with open(os.devnull) as nothing:
        os.dup2(nothing.fileno(), 0)
    os.dup2(2, 1)
    if sys.path and sys.path[0] == os.getcwd():  # as ipykernel: the working folder as ''
        sys.path[0] = ""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run stops the template, not Ctrl-C
    template = Template()  # the run stops the template, not Ctrl-C
    for line in requests:
        request = json.loads(line)
        if request["op"] == "setup":
            answer = template.setup(request["cells"], request.get("seeded", []))
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forks are reaped as they end
        else:
            started = time.perf_counter()
            pid = template.fork(request["connection_file"], (requests, answers))
            answer = {"pid": pid, "seconds": time.perf_counter() - started}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
