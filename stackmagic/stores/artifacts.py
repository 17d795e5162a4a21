"""The artifact store: step outputs as files under one fsspec URL.

Like fsspec itself, the URL's protocol picks the filesystem, so a bucket on
S3, GCS or Azure differs from a local folder only by its storage options.
Every file is written to a hidden temporary name in its final folder and then
moved into place: a reader, even in another process, sees either nothing or
the whole file, never half an artifact.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import posixpath
import secrets
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from ..errors import StackmagicError
from .materializers import (
    Materializer,
    MaterializerUnsuitable,
    materializer_by_extension,
    materializers_for,
)

COPY_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ArtifactInfo:
    """What the metadata store records about one saved value."""

    uri: str  # as the store names it: an absolute path for a local folder, else a URL
    materializer: str
    content_hash: str  # sha256 of the stored bytes: equal files, equal hashes (the cache key)
    size: int
    type_name: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArtifactInfo:
        return cls(
            uri=str(data["uri"]),
            materializer=str(data["materializer"]),
            content_hash=str(data["content_hash"]),
            size=int(data["size"]),
            type_name=str(data["type_name"]),
        )


class ArtifactStore:
    """Files under one root folder or URL, written atomically.

    ``storage_options`` go to fsspec and are part of :meth:`describe`, which is
    how a step's kernel opens the same store; ``secret_options`` (keys,
    tokens) reach fsspec too but are never described or shown.
    """

    def __init__(
        self,
        root: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        secret_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._storage_options = dict(storage_options or {})
        self._fs, path = url_to_fs(root, **{**self._storage_options, **(secret_options or {})})
        if isinstance(self._fs, LocalFileSystem):
            # absolute, so a kernel started in another folder finds the same files
            root = path = posixpath.normpath(path)
        self.root = root.rstrip("/")
        self._path = path.rstrip("/")
        if not self._path or self.root.endswith(":"):
            raise StackmagicError(
                f"artifact store root {root!r} names no folder; give a folder or a bucket path"
            )

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r}, storage_options={self._storage_options!r})"

    def describe(self) -> dict[str, Any]:
        """What another process needs to open this store, without the secret options."""
        return {"root": self.root, "storage_options": dict(self._storage_options)}

    @classmethod
    def from_description(
        cls, description: Mapping[str, Any], *, secret_options: Mapping[str, Any] | None = None
    ) -> ArtifactStore:
        """The store :meth:`describe` described, with secrets given again separately."""
        return cls(
            description["root"],
            description.get("storage_options"),
            secret_options=secret_options,
        )

    def uri(self, *parts: str) -> str:
        """The URI of ``root/part/part...``; each part is one plain name."""
        for part in parts:
            if part in ("", ".", "..") or "/" in part:
                raise ValueError(f"{part!r} is not a plain file or folder name")
        return "/".join((self.root, *parts))

    def save(self, value: Any, location: str) -> ArtifactInfo:
        """Store ``value`` at ``location`` plus the extension of the materializer chosen."""
        path = self._path_of(location)
        type_name = f"{type(value).__module__}.{type(value).__qualname__}"
        for materializer in materializers_for(value):
            try:
                with self._publishing(f"{path}.{materializer.extension}") as temporary:
                    with self._fs.open(temporary, "wb") as stream:
                        hashing = _HashingStream(stream)
                        _write(materializer, value, hashing, type_name, location)
            except MaterializerUnsuitable:
                continue
            return ArtifactInfo(
                uri=f"{location}.{materializer.extension}",
                materializer=materializer.name,
                content_hash=hashing.hexdigest(),
                size=hashing.size,
                type_name=type_name,
            )
        raise StackmagicError(f"no materializer can save a {type_name} to {location}")

    def load(self, uri: str) -> Any:
        """The value saved at ``uri``, read by the materializer its extension names."""
        path = self._path_of(uri)
        name = posixpath.basename(path)
        extension = name.rpartition(".")[2] if "." in name else ""
        try:
            materializer = materializer_by_extension(extension)
        except StackmagicError as exc:
            raise StackmagicError(f"cannot load {uri}: {exc}") from None
        with self._open_artifact(uri) as stream:
            return materializer.read(stream)

    def exists(self, uri: str) -> bool:
        return self._fs.exists(self._path_of(uri))

    def put_bytes(self, data: bytes, uri: str) -> None:
        with self._publishing(self._path_of(uri)) as temporary:
            self._fs.pipe_file(temporary, data)

    def put_file(self, local_path: str | os.PathLike[str], uri: str) -> None:
        with self._publishing(self._path_of(uri)) as temporary:
            self._fs.put_file(os.fspath(local_path), temporary)

    def get_file(self, uri: str, local_path: str | os.PathLike[str]) -> None:
        """Copy ``uri`` to ``local_path``, which also appears only once complete."""
        target = Path(local_path)
        temporary = target.with_name(_temporary_name(target.name))
        with self._open_artifact(uri) as source:
            try:
                with open(temporary, "wb") as destination:
                    shutil.copyfileobj(source, destination, COPY_CHUNK_BYTES)
                os.replace(temporary, target)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise

    def read_bytes(self, uri: str) -> bytes:
        try:
            return self._fs.cat_file(self._path_of(uri))
        except FileNotFoundError:
            raise _missing(uri) from None

    def _path_of(self, uri: str) -> str:
        """The filesystem's own path for a URI under this store's root."""
        if uri == self.root:
            return self._path
        if not uri.startswith(self.root + "/"):
            raise ValueError(f"{uri} is not in the artifact store at {self.root}")
        return self._path + uri[len(self.root) :]

    @contextlib.contextmanager
    def _open_artifact(self, uri: str) -> Iterator[IO[bytes]]:
        try:
            stream = self._fs.open(self._path_of(uri), "rb")
        except FileNotFoundError:
            raise _missing(uri) from None
        with stream:
            yield stream

    @contextlib.contextmanager
    def _publishing(self, path: str) -> Iterator[str]:
        """A temporary path beside ``path``, moved onto it if the block succeeds, else removed."""
        directory, name = posixpath.split(path)
        self._fs.makedirs(directory, exist_ok=True)
        temporary = posixpath.join(directory, _temporary_name(name))
        try:
            yield temporary
            self._fs.mv(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                self._fs.rm_file(temporary)
            raise


class _HashingStream(io.RawIOBase):
    """Passes writes through while hashing them, so the bytes are never read twice."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream
        self._digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._stream.write(view)
        self._digest.update(view)
        self.size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _write(
    materializer: Materializer, value: Any, stream: IO[bytes], type_name: str, location: str
) -> None:
    """Let ``materializer`` write ``value``; a value it cannot serialise is the user's to fix."""
    try:
        materializer.write(value, stream)
    except (MaterializerUnsuitable, OSError):
        raise
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise StackmagicError(
            f"cannot save a {type_name} to {location} ({materializer.name}: {reason}); "
            "keep only values that can be pickled in a step's outputs"
        ) from exc


def _temporary_name(name: str) -> str:
    return f".{name}.tmp-{secrets.token_hex(8)}"


def _missing(uri: str) -> StackmagicError:
    return StackmagicError(
        f"no artifact at {uri}; it may have been deleted from the artifact store — "
        "run the step again"
    )
