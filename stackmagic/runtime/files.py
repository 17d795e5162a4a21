"""Files as step outputs: what a step writes beside the notebook, kept and put back in place.

Notebooks hand files from cell to cell (one extracts ``data/part.txt``, a
later one reads it; a model is pickled to ``model.pkl``), and so do Elyra's
pipelines. A step's *file outputs* are the files under its working folder
that it created or changed, found by comparing the folder before and after
it ran (size and modification time). They are kept in the artifact store
under the step's folder and recorded as outputs named ``file:PATH``, with
their content hash. Before a step runs, the files its upstream steps (direct
or not) wrote are put in place where missing or different: that is what
carries them to a step running elsewhere (a Kubeflow pod, a ``kfp.local``
task, each with a fresh copy of the bundle). On this machine they are in
place already, so nothing is copied.

Left out of the comparison, as from the bundle: hidden names (``.git``,
``.stackmagic``, checkpoints), ``__pycache__``, ``*.pyc`` and notebooks,
which Jupyter saves while a run goes on.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath

from blake3 import blake3

from ..errors import StackmagicError
from ..stores.artifacts import COPY_CHUNK_BYTES, ArtifactInfo, ArtifactStore

#: Outputs named so are files: ``file:data/part.txt``.
FILE_PREFIX = "file:"
FILE_MATERIALIZER = "file"

#: What a file looked like: size and modification time, enough to see it was written.
Signature = tuple[int, int]


_activity: dict[str, list[int]] = {}
_activity_lock = threading.Lock()


@contextlib.contextmanager
def watching(folder: Path) -> Iterator[Callable[[], bool]]:
    """While a step runs in ``folder``: whether it ran there alone, as far as this process knows.

    A step that ran alone owns every file that changed meanwhile; one that ran beside
    others owns those its kernel was seen to write.
    """
    key = str(folder)
    with _activity_lock:
        running, started = _activity.setdefault(key, [0, 0])
        _activity[key] = [running + 1, started + 1]
    try:
        yield lambda: running == 0 and _activity[key][1] == started + 1
    finally:
        with _activity_lock:
            _activity[key][0] -= 1
            if _activity[key][0] == 0:
                del _activity[key]


def snapshot(folder: Path, skip: Iterable[Path] = ()) -> dict[str, Signature]:
    """Every file under ``folder`` that could be a step's output, by relative POSIX path."""
    skipped = {os.path.normpath(path) for path in skip}
    found: dict[str, Signature] = {}
    pending = [(folder, "")]
    while pending:
        directory, relative = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:  # gone or unreadable meanwhile: nothing of it to keep
            continue
        for entry in entries:
            path = f"{relative}{entry.name}"
            if entry.name.startswith(".") or entry.name == "__pycache__" or entry.path in skipped:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append((Path(entry.path), f"{path}/"))
                elif entry.is_file() and not entry.name.endswith((".ipynb", ".pyc")):
                    stat = entry.stat()
                    found[path] = (stat.st_size, stat.st_mtime_ns)
            except OSError:
                continue
    return found


def written(before: Mapping[str, Signature], after: Mapping[str, Signature]) -> list[str]:
    """Files that appeared or changed between two snapshots."""
    return sorted(path for path, signature in after.items() if before.get(path) != signature)


def keep(
    store: ArtifactStore, folder: Path, paths: Iterable[str], location: str
) -> dict[str, ArtifactInfo]:
    """Copy files into the artifact store under ``location``; their records, by output name."""
    kept = {}
    for path in paths:
        local = folder / path
        uri = f"{location}/{path}"
        store.put_file(local, uri)
        kept[FILE_PREFIX + path] = ArtifactInfo(
            uri=uri,
            materializer=FILE_MATERIALIZER,
            content_hash=content_hash(local),
            size=local.stat().st_size,
            type_name=FILE_MATERIALIZER,
        )
    return kept


def put_in_place(store: ArtifactStore, folder: Path, files: Mapping[str, ArtifactInfo]) -> None:
    """Make each file (by output name) as recorded, where it is missing or different.

    Names come from the metadata store, which others may write: one that climbs out of
    ``folder`` (``file:../../.bashrc``) is refused, and nothing is written for it.
    """
    for name, info in files.items():
        relative = PurePosixPath(name[len(FILE_PREFIX) :])
        if relative.is_absolute() or not relative.parts or {"..", "."} & set(relative.parts):
            raise StackmagicError(
                f"the file output {name!r} of an earlier step names no place inside {folder}; "
                "it is refused (its record may have been altered)"
            )
        local = folder / relative
        if (
            local.is_file()
            and local.stat().st_size == info.size
            and content_hash(local) == info.content_hash
        ):
            continue
        local.parent.mkdir(parents=True, exist_ok=True)
        store.get_file(info.uri, local)


def file_outputs(outputs: Mapping[str, ArtifactInfo]) -> dict[str, ArtifactInfo]:
    return {name: info for name, info in outputs.items() if name.startswith(FILE_PREFIX)}


#: Hashes of files this process read, by path, size and modification time: a large file one
#: step wrote is hashed once, not again before every step after it.
_hashes: dict[tuple[str, int, int], str] = {}


def content_hash(path: Path) -> str:
    """BLAKE3 of the file's bytes, as the artifact store hashes what it keeps."""
    stat = path.stat()
    seen = (str(path), stat.st_size, stat.st_mtime_ns)
    if seen not in _hashes:
        digest = blake3()
        with open(path, "rb") as stream:
            while chunk := stream.read(COPY_CHUNK_BYTES):
                digest.update(chunk)
        _hashes[seen] = digest.hexdigest()
    return _hashes[seen]
