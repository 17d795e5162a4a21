"""Private temporary folders (``stackmagic-KIND-*``) that ``stackmagic gc`` can tell from litter.

A process that is killed cannot remove its temporary folders. So each folder
holds a lock file that the process making it keeps locked (``flock``) while it
uses the folder: the kernel drops the lock when the process dies, however it
dies, and a folder whose lock can be taken is litter. A lock says more than a
PID would: it means the same across PID namespaces (containers sharing the
temporary folder) and cannot be confused by a reused PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows: no flock; gc leaves temporary folders alone there
    fcntl = None  # type: ignore[assignment]

PREFIX = "stackmagic-"
#: The file a folder's owner keeps locked.
LOCK_NAME = ".stackmagic-in-use"
#: The kinds of folder stackmagic made before they held a lock: only those are judged by age.
UNLOCKED_KINDS = ("bundle", "kernels", "step", "upload", "vm", "kfp")


class ScratchFolder:
    """A new ``stackmagic-KIND-*`` folder in the temporary folder, locked until :meth:`remove`.

    ``with ScratchFolder("bundle") as folder:`` works as :class:`tempfile.TemporaryDirectory`.
    """

    def __init__(self, kind: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-"))
        self._lock: IO[bytes] | None = None
        if fcntl is not None:  # locked under another name first: gc never sees it unlocked
            self._lock = open(self.path / f"{LOCK_NAME}.new", "wb")  # noqa: SIM115 - see remove()
            fcntl.flock(self._lock, fcntl.LOCK_EX)
            os.rename(self.path / f"{LOCK_NAME}.new", self.path / LOCK_NAME)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        self.remove()


def abandoned_folders(untouched_for: float) -> dict[Path, int]:
    """stackmagic's folders in the temporary folder that no live process uses, with their bytes.

    A folder with a lock file is abandoned when its lock can be taken. One of the
    kinds stackmagic made without (an older stackmagic; or one being made this
    instant) is abandoned when nothing in it changed for ``untouched_for`` seconds.
    """
    if fcntl is None:
        return {}
    found = {}
    for folder in sorted(Path(tempfile.gettempdir()).glob(f"{PREFIX}*")):
        if folder.is_symlink() or not folder.is_dir():
            continue
        lock = folder / LOCK_NAME
        size, newest = _walk(folder)
        if lock.is_file() and not lock.is_symlink():
            if not _in_use(lock):
                found[folder] = size
        elif folder.name.split("-")[1] in UNLOCKED_KINDS and time.time() - newest >= untouched_for:
            found[folder] = size
    return found


def _in_use(lock: Path) -> bool:
    """Whether a live process holds the lock: if it can be taken here, its owner is gone."""
    try:
        with open(lock, "rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held (BlockingIOError), or not ours to read: in use, as far as we know
        return True
    return False


def _walk(folder: Path) -> tuple[int, float]:
    """Bytes of the files below ``folder`` and the time of its newest change (links not followed)."""
    size, newest = 0, folder.lstat().st_mtime
    for root, folders, files in os.walk(folder):
        for names, counted in ((folders, False), (files, True)):
            for name in names:
                with contextlib.suppress(OSError):  # removed meanwhile
                    status = os.lstat(os.path.join(root, name))
                    newest = max(newest, status.st_mtime)
                    size += status.st_size if counted else 0
    return size, newest
