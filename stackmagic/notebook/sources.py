"""The files beside a notebook that travel with its pipeline.

A step that does ``import helpers`` or reads ``labels.csv`` must find them
wherever it runs, so the bundle carries the folder the notebook is in. Walking
that folder:

- Left out: names starting with ``.`` (``.git``, ``.venv``, ``.stackmagic``,
  ``.ipynb_checkpoints``...), ``__pycache__`` folders, ``*.pyc``, every
  ``*.ipynb`` (the notebook's steps are in the bundle already and other
  notebooks are not importable, so editing them must not change the digest),
  whatever lies under a path in ``exclude`` (a local artifact store inside
  the project, say), and symlinked folders (never followed; a symlinked file
  is read through).
- ``.gitignore`` files work as in git: patterns apply relative to the folder
  holding the file, a deeper file wins over a shallower one, the last matching
  line wins, and nothing inside an ignored folder comes back (it is not even
  walked, so an ignored ``data/`` costs nothing). ``.stackmagicignore`` files,
  same syntax and placement, apply after every ``.gitignore``: ``!name`` there
  brings back what git ignores.
- A file larger than ``max_file_bytes`` is left out with a warning: steps on
  this machine can still read it, steps elsewhere cannot.
- More than ``max_files`` files or ``max_total_bytes`` in all is an error,
  raised as soon as the walk passes the limit: it usually means the notebook
  sits in a home folder or beside a data set.

Files a pipeline's steps wrote (``written``: path -> the content hashes its
runs recorded) are outputs, not sources: left out while their content is
what a step left, so a run never invalidates the next one's cache; a file
the user changes afterwards counts again.

Folders are read in name order and files hashed (BLAKE3, as the artifact
store hashes what it keeps; streamed), so the
result depends on names and contents alone, not on the order the OS lists them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from blake3 import blake3
from pathspec import GitIgnoreSpec

from ..errors import StackmagicError, describe_os_error

DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 5000
DEFAULT_MAX_TOTAL_BYTES = 200 * 1024 * 1024
NAMES_IN_A_WARNING = 5
CHUNK_BYTES = 1024 * 1024
WHAT_TO_DO = (
    "list what the steps do not need in .stackmagicignore (gitignore syntax) beside the notebook"
)


@dataclass(frozen=True)
class SourceFiles:
    """What a bundle carries besides the notebook, hashed so a run can be cached and checked."""

    root: Path
    #: relative POSIX path -> BLAKE3 of the content, in path order
    files: dict[str, str]
    #: relative path -> "size:mtime" of files over ``max_file_bytes``, in path order: not
    #: carried, but steps on this machine read them, so their changes still count
    left_out: dict[str, str]
    #: the limit ``left_out`` was measured against, for the warning
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES

    @property
    def digest(self) -> str:
        """Changes exactly when a file is added, removed, renamed or edited.

        A file left out for its size counts by its size and modification time.
        """
        pairs = hashlib.sha256()
        for path, content in sorted({**self.files, **self.left_out}.items()):
            pairs.update(os.fsencode(path) + b"\0" + content.encode() + b"\0")
        return pairs.hexdigest()

    @property
    def warnings(self) -> list[str]:
        if not self.left_out:
            return []
        return [
            f"left out of the bundle, larger than {_describe_size(self.max_file_bytes)}: "
            f"{_name_some(list(self.left_out))} (steps off this machine will not see them; "
            "list them in .stackmagicignore to silence this)"
        ]

    def copy_to(self, destination: Path) -> None:
        """Copy the files under ``destination``, refusing any that changed since they were hashed.

        The bundle is stored under its digest, so it must hold exactly what the digest says.
        """
        for relative, expected in self.files.items():
            source, target = self.root / relative, destination / relative
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as copy:
                    copied = _content_hash(source, copy)
                shutil.copymode(source, target)
            except OSError as error:
                raise StackmagicError(describe_os_error(error)) from None
            if copied != expected:
                raise StackmagicError(
                    f"{source} changed while the pipeline's bundle was being made; run it again"
                )


def collect_sources(
    folder: Path,
    *,
    exclude: Iterable[Path] = (),
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    written: Mapping[str, Collection[str]] | None = None,
) -> SourceFiles:
    """The files under ``folder`` a pipeline's steps may need (rules in the module docstring)."""
    root = folder.resolve()
    if not root.is_dir():
        raise StackmagicError(f"{root} is not a folder; give the folder that holds the notebook")
    excluded = _excluded_paths(root, exclude)
    written = written or {}
    sizes: dict[str, int] = {}
    left_out: dict[str, str] = {}
    total_bytes = 0
    candidates = () if "." in excluded else _walk(root, "", _IgnoreRules(), excluded)
    for relative, entry in candidates:
        try:
            stat = entry.stat()
        except OSError as error:
            raise _unreadable(error) from None
        size = stat.st_size
        if size > max_file_bytes:
            left_out[relative] = f"{size}:{stat.st_mtime_ns}"
            continue
        sizes[relative] = size
        total_bytes += size
        if len(sizes) > max_files:
            raise StackmagicError(
                f"{root} holds more than {max_files} files to bundle with the pipeline; "
                f"{WHAT_TO_DO}"
            )
        if total_bytes > max_total_bytes:
            raise StackmagicError(
                f"{root} holds more than {_describe_size(max_total_bytes)} of files to bundle "
                f"with the pipeline; {WHAT_TO_DO}"
            )
    try:
        files = {relative: _content_hash(root / relative) for relative in sorted(sizes)}
    except OSError as error:
        raise _unreadable(error) from None
    files = {path: digest for path, digest in files.items() if digest not in written.get(path, ())}
    return SourceFiles(root, files, dict(sorted(left_out.items())), max_file_bytes)


@dataclass(frozen=True)
class _IgnoreRules:
    """The ignore files in force in one folder, outermost first, each with the folder it sits in.

    The folder is kept as a prefix (``"sub/"``, ``""`` at the root) because a
    pattern is matched against the path relative to its own file.
    """

    gitignores: tuple[tuple[str, GitIgnoreSpec], ...] = ()
    stackmagicignores: tuple[tuple[str, GitIgnoreSpec], ...] = ()

    def inside(self, directory: Path, relative: str) -> _IgnoreRules:
        prefix = f"{relative}/" if relative else ""
        return _IgnoreRules(
            self.gitignores + _read_ignore_file(directory / ".gitignore", prefix),
            self.stackmagicignores + _read_ignore_file(directory / ".stackmagicignore", prefix),
        )

    def ignores(self, path: str) -> bool:
        """Whether ``path`` (ending in ``/`` for a folder) is ignored: the last verdict wins."""
        ignored = False
        for prefix, spec in (*self.gitignores, *self.stackmagicignores):
            verdict = spec.check_file(path[len(prefix) :]).include
            if verdict is not None:
                ignored = verdict
        return ignored


def _walk(
    root: Path, relative: str, outer_rules: _IgnoreRules, excluded: set[str]
) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Files to bundle under ``root / relative``, in name order; ignored folders are not entered."""
    directory = root / relative
    try:
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as error:
        raise _unreadable(error) from None
    rules = outer_rules.inside(directory, relative)
    for entry in entries:
        path = f"{relative}/{entry.name}" if relative else entry.name
        if entry.name.startswith(".") or path in excluded:
            continue
        if entry.is_dir(follow_symlinks=False):
            if entry.name != "__pycache__" and not rules.ignores(path + "/"):
                yield from _walk(root, path, rules, excluded)
        elif (  # is_file() follows symlinks: a link to a folder, a broken link or a pipe is skipped
            entry.is_file()
            and not entry.name.endswith((".ipynb", ".pyc"))
            and not rules.ignores(path)
        ):
            yield path, entry


def _read_ignore_file(path: Path, prefix: str) -> tuple[tuple[str, GitIgnoreSpec], ...]:
    try:
        lines = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except (FileNotFoundError, IsADirectoryError):
        return ()
    except OSError as error:
        raise _unreadable(error) from None
    return ((prefix, GitIgnoreSpec.from_lines(lines)),)


def _excluded_paths(root: Path, exclude: Iterable[Path]) -> set[str]:
    """``exclude`` as paths relative to ``root``; ``"."`` when ``root`` itself lies in one."""
    relative = set()
    for path in exclude:
        # Resolve the folders above it, like root, but not the path itself: a symlink named in
        # ``exclude`` is the link, not what it points to.
        path = Path(path).parent.resolve() / Path(path).name
        if path == root or path in root.parents:
            relative.add(".")
        elif root in path.parents:
            relative.add(path.relative_to(root).as_posix())
    return relative


def _content_hash(path: Path, copy: BinaryIO | None = None) -> str:
    """The content's hash, read in chunks (data files can be large), written to ``copy`` if given."""
    content = blake3()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            content.update(chunk)
            if copy is not None:
                copy.write(chunk)
    return content.hexdigest()


def _unreadable(error: OSError) -> StackmagicError:
    return StackmagicError(
        f"cannot read {error.filename} ({error.strerror or error}); if the steps do not need it, "
        "list it in .stackmagicignore (gitignore syntax) beside the notebook"
    )


def _describe_size(size: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def _name_some(paths: list[str]) -> str:
    shown = ", ".join(paths[:NAMES_IN_A_WARNING])
    more = len(paths) - NAMES_IN_A_WARNING
    return f"{shown} and {more} more" if more > 0 else shown
