"""A JSON document on disk that several processes can update safely.

Every change happens under an inter-process file lock and is written to a
temporary file that is fsynced and then renamed over the old one, so readers
never see half a file and a crash mid-write leaves the previous version.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import StackmagicError

LOCK_TIMEOUT_SECONDS = 30.0
#: What to do about a file that cannot be read, unless its owner says better.
RESTORE = "restore it from a backup, or move it aside to start afresh"


class JsonFile:
    """One JSON object in one file, read without a lock, changed under one."""

    def __init__(self, path: Path, *, mode: int = 0o644, remedy: str = RESTORE) -> None:
        """``remedy`` says what to do about a damaged file: it is never overwritten."""
        self.path = path
        self.mode = mode
        self.remedy = remedy

    def read(self, default: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The document, or ``default()`` where there is no file yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return default()
        except UnicodeDecodeError:
            raise self.damaged("is not UTF-8 text") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self.damaged(f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise self.damaged("does not hold a JSON object")
        return data

    def damaged(self, problem: str) -> StackmagicError:
        """The one-line error for a file that cannot be used as it is: what is wrong, what to do."""
        return StackmagicError(
            f"{self.path} {problem}; {self.remedy}: stackmagic will not overwrite it"
        )

    @contextlib.contextmanager
    def edit(self, default: Callable[[], dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yield the current document; write it back if the block ends without error."""
        from filelock import FileLock, Timeout  # only writers pay for it

        lock = FileLock(str(self.path.with_name(self.path.name + ".lock")), mode=self.mode)
        try:
            with lock.acquire(timeout=LOCK_TIMEOUT_SECONDS):
                data = self.read(default)
                before = json.dumps(data, sort_keys=True)
                yield data
                if json.dumps(data, sort_keys=True) != before or not self.path.exists():
                    self.write(data)
        except Timeout:
            raise StackmagicError(
                f"another process has held the lock on {self.path} for "
                f"{LOCK_TIMEOUT_SECONDS:.0f} s; wait for it to finish or end it"
            ) from None

    def write(self, data: dict[str, Any]) -> None:
        """Replace the file atomically (callers hold the lock)."""
        text = json.dumps(data, indent=2, sort_keys=False) + "\n"
        prefix = f".{self.path.name}."
        for leftover in self.path.parent.glob(prefix + "*"):  # from a writer killed mid-write
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=prefix)
        try:
            os.fchmod(handle, self.mode)
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        _fsync_directory(self.path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
