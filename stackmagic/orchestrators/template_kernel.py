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

import codecs
import contextlib
import ctypes
import io
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any, TextIO

from .fork_safety import unforkable

PR_SET_PDEATHSIG = 1
#: The standard streams' file descriptors, by name.
_FDS = {"stdout": 1, "stderr": 2}


class _Recorder:
    """What the setup cells output, as the kernel's IOPub messages would carry it.

    While a cell runs, the process's standard output and error are files of
    the recorder's (as a kernel captures them, what subprocesses and C code
    write shows too); what Python writes goes there as well, so each stream
    keeps its order. They are read into stream outputs before each display
    and at the cell's end.
    """

    def __init__(self) -> None:
        self.outputs: list[dict[str, Any]] = []
        self._files = {name: tempfile.TemporaryFile() for name in _FDS}
        self._read = dict.fromkeys(_FDS, 0)
        self._decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name in _FDS}
        self._clear_before_next = False
        self._between_cells = os.dup(_FDS["stderr"])  # the kernels' log (see ``main``)

    def start_cell(self) -> None:
        self.outputs = []
        for name, file in self._files.items():
            file.truncate(0)
            self._read[name] = 0
            self._decoders[name].reset()
            os.lseek(file.fileno(), 0, os.SEEK_SET)
            os.dup2(file.fileno(), _FDS[name])

    def end_cell(self) -> None:
        self.read_streams()
        for fd in _FDS.values():
            os.dup2(self._between_cells, fd)

    def close(self) -> None:
        """Done with the setup: nothing of the recorder's stays open in the forks."""
        for file in self._files.values():
            file.close()
        os.close(self._between_cells)

    def message(self, msg_type: str, content: dict[str, Any]) -> None:
        self.read_streams()
        if msg_type == "clear_output":
            if content.get("wait"):  # as a frontend does: at the next output
                self._clear_before_next = True
            else:
                self.outputs.clear()
        elif msg_type in ("stream", "display_data", "execute_result", "error"):
            self._add({"header": {"msg_type": msg_type}, "content": content})

    def read_streams(self) -> None:
        for name, file in self._files.items():
            getattr(sys, f"__{name}__").flush()  # what was printed to it, buffered
            size = os.fstat(file.fileno()).st_size
            new = os.pread(file.fileno(), size - self._read[name], self._read[name])
            self._read[name] += len(new)
            text = self._decoders[name].decode(new)
            if text:
                self._stream(name, text)

    def _stream(self, name: str, text: str) -> None:
        last = self.outputs[-1] if self.outputs else None
        if last and last["header"]["msg_type"] == "stream" and last["content"]["name"] == name:
            last["content"]["text"] += text
        else:
            self._add({"header": {"msg_type": "stream"}, "content": {"name": name, "text": text}})

    def _add(self, output: dict[str, Any]) -> None:
        if self._clear_before_next:
            self.outputs.clear()
            self._clear_before_next = False
        self.outputs.append(output)


class _Stream(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` of the setup, as ipykernel's stream is a kernel's.

    In the template it writes to the file descriptor the recorder reads; in a
    fork, to the kernel's own stream of that name: a logging handler or
    anything else the setup gave it to keeps writing where the step's output goes.
    """

    forked = False

    def __init__(self, name: str) -> None:
        self.name_ = name

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return _FDS[self.name_]

    def write(self, text: str) -> int:
        now = getattr(sys, self.name_)
        if self.forked and now is not self:
            return int(now.write(text))
        os.write(_FDS[self.name_], text.encode("utf-8", "replace"))
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
            self.init_path()
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

        def serve(self, connection_file: str, ready: Callable[[], None]) -> None:
            """In a fork: the rest of the kernel's start, on the shell the setup ran in;
            ``ready`` is called just before the kernel takes requests."""
            shell, self.forked, self.kernel = self.shell, True, None
            self.initialize(["-f", connection_file])
            shell.kernel = self.kernel  # type: ignore[union-attr] # found the shell, not made it
            # the banner in the kernel_info reply picks a tip with the global random module,
            # whose state a seeded setup left for the step (a fresh kernel answers before)
            shell.enable_tip = False  # type: ignore[union-attr]
            ready()
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
        from stackmagic import step_io

        self.seeded = set(seeded)
        step_io.watch_files()  # the files the setup writes are each step's, as in a fresh kernel
        done: list[dict[str, Any]] = []
        with self._recording():
            for source in cells:
                self.recorder.start_cell()
                started = _now()
                try:
                    result = self.shell.run_cell(source, store_history=True)
                finally:
                    self.recorder.end_cell()
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

        self.random_state = random.getstate()  # before anything else may draw from it
        self.recorder.close()
        written = step_io.take_written()  # a fork notes only what its step writes
        return {
            "cells": done,
            "failed": False,
            "unsafe": unforkable(self.app.kernel.eventloop),
            "written": written,
        }

    @contextlib.contextmanager
    def _recording(self) -> Iterator[None]:
        """The setup's output goes to the recorder, as a kernel's goes to IOPub; input, which
        papermill never gives a kernel, is refused as a kernel refuses it."""
        import builtins
        import getpass

        from IPython.core.error import StdinNotImplementedError

        def no_input(what: str) -> Any:
            def refuse(*args: Any, **kwargs: Any) -> Any:
                raise StdinNotImplementedError(
                    f"{what} was called, but this frontend does not support input requests."
                )

            return refuse

        real = sys.stdout, sys.stderr, builtins.input, getpass.getpass
        sys.stdout, sys.stderr = _Stream("stdout"), _Stream("stderr")
        builtins.input, getpass.getpass = no_input("raw_input"), no_input("getpass")
        try:
            yield
        finally:
            sys.stdout, sys.stderr, builtins.input, getpass.getpass = real

    def fork(self, connection_file: str, channel: tuple[TextIO, TextIO]) -> int:
        parent = os.getpid()
        pid = os.fork()
        if pid:
            return pid
        try:  # the child: never returns into the template's loop
            for stream in channel:
                stream.close()
            _Stream.forked = True
            _die_with(parent)
            os.setpgid(0, 0)  # its own process group: signals for it reach its subprocesses too
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.app.serve(connection_file, ready=self._seed_as_a_new_kernel)
        except BaseException:
            import traceback

            traceback.print_exc(file=sys.__stderr__)  # the log, whatever sys.stderr is now
            os._exit(1)
        os._exit(0)

    def _seed_as_a_new_kernel(self) -> None:
        """Generators the setup seeds start from that seed; the others are seeded afresh.
        Called once the kernel has started, which may draw from them."""
        import random

        if "random" in self.seeded:  # Python reseeds it in every child: undo that
            random.setstate(self.random_state)
        if "numpy.random" not in self.seeded and "numpy.random" in sys.modules:
            sys.modules["numpy.random"].seed()
        if "torch" not in self.seeded and "torch" in sys.modules:
            sys.modules["torch"].seed()
        self._reseed_unseeded_generators()

    def _reseed_unseeded_generators(self) -> None:
        """numpy Generators the setup made without a seed (``default_rng()``) draw afresh in
        every step, as each fresh kernel made its own: their seed sequence holds the 128
        bits of entropy numpy drew, which no one writes as a seed."""
        numpy_random = sys.modules.get("numpy.random")
        if numpy_random is None:
            return
        for value in list(self.shell.user_ns.values()):
            if not isinstance(value, numpy_random.Generator):
                continue
            sequence = getattr(value.bit_generator, "seed_seq", None)
            entropy = getattr(sequence, "entropy", None)
            if isinstance(entropy, int) and entropy >= 2**64 and not sequence.spawn_key:  # type: ignore[union-attr]
                fresh = type(value.bit_generator)(numpy_random.SeedSequence())
                value.bit_generator.state = fresh.state


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
    if sys.path and sys.path[0] in ("", os.getcwd()):  # as ipykernel's launcher; the shell
        del sys.path[0]  # puts the working folder back after the standard library
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
