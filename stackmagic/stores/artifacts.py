"""The artifact store: step outputs as files under one fsspec URL.

Like fsspec itself, the URL's protocol picks the filesystem, so a bucket on
S3, GCS or Azure differs from a local folder only by its storage options.
A reader, even in another process, sees either nothing or the whole file,
never half an artifact: in a folder, every file is written to a hidden
temporary name beside its final one and then renamed; in an object store
(S3, GCS, Azure), which publishes an object only once its upload completes,
it is spooled locally and uploaded whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import secrets
import shutil
from collections.abc import Collection, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from ..errors import StackmagicError
from ..scratch import ScratchFolder
from .content import materialize, type_name
from .materializers import (
    InputStream,
    Materializer,
    materializer_by_extension,
)
from .storage_errors import from_storage, is_missing, storage_failure

COPY_CHUNK_BYTES = 1 << 20
#: Where a process started for a step finds the store's secret options (JSON).
SECRETS_VARIABLE = "STACKMAGIC_ARTIFACT_STORE_SECRETS"
#: fsspec protocols of stores where an upload becomes visible only once complete.
OBJECT_STORE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


class OutsideStore(StackmagicError, ValueError):
    """A URI that names no place inside the store: refused before anything is read or written."""


@dataclass(frozen=True)
class ArtifactInfo:
    """What the metadata store records about one saved value."""

    uri: str  # as the store names it: an absolute path for a local folder, else a URL
    materializer: str
    content_hash: str  # BLAKE3 of the stored bytes: equal files, equal hashes (the cache key)
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
    tokens) reach fsspec too but are never described or shown: another
    process gets them through :data:`SECRETS_VARIABLE` in its environment.
    """

    def __init__(
        self,
        root: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        secret_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._storage_options = dict(storage_options or {})
        self._secret_options = dict(secret_options or {})
        self._fs, path = url_to_fs(root, **{**self._storage_options, **self._secret_options})
        if isinstance(self._fs, LocalFileSystem):
            # absolute, so a kernel started in another folder finds the same files
            root = path = posixpath.normpath(path)
        self.root = root.rstrip("/")
        self._path = path.rstrip("/")
        if not self._path or self.root.endswith(":"):
            raise StackmagicError(
                f"artifact store root {root!r} names no folder; give a folder or a bucket path"
            )
        protocols = (
            {self._fs.protocol} if isinstance(self._fs.protocol, str) else set(self._fs.protocol)
        )
        #: An object store publishes an object whole when its upload completes, so
        #: uploads go straight to the final name; elsewhere, to a temporary one first.
        self._whole_objects = bool(protocols & OBJECT_STORE_PROTOCOLS)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r}, storage_options={self._storage_options!r})"

    def describe(self) -> dict[str, Any]:
        """What another process needs to open this store, without the secret options."""
        return {"root": self.root, "storage_options": dict(self._storage_options)}

    def elsewhere(self, root: str) -> ArtifactStore:
        """Another folder of the same storage, reached with this store's options and secrets."""
        return ArtifactStore(root, self._storage_options, secret_options=self._secret_options)

    def secret_environment(self) -> dict[str, str]:
        """Environment variables that carry the secret options to a process this one starts."""
        return {SECRETS_VARIABLE: json.dumps(self._secret_options)} if self._secret_options else {}

    @classmethod
    def from_description(
        cls, description: Mapping[str, Any], *, secret_options: Mapping[str, Any] | None = None
    ) -> ArtifactStore:
        """The store :meth:`describe` described; secrets given, or else from the environment."""
        if secret_options is None:
            secret_options = json.loads(os.environ.get(SECRETS_VARIABLE) or "{}")
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

        @contextlib.contextmanager
        def stream(materializer: Materializer) -> Iterator[IO[bytes]]:
            with (
                self._explained(location),
                self._writing(f"{path}.{materializer.extension}") as out,
            ):
                yield out

        materializer, hashing = materialize(value, location, stream)
        return ArtifactInfo(
            uri=f"{location}.{materializer.extension}",
            materializer=materializer.name,
            content_hash=hashing.hexdigest(),
            size=hashing.size,
            type_name=type_name(value),
        )

    def load(self, uri: str) -> Any:
        """The value saved at ``uri``, read by the materializer its extension names."""
        path = self._path_of(uri)
        name = posixpath.basename(path)
        extension = name.rpartition(".")[2] if "." in name else ""
        try:
            materializer = materializer_by_extension(extension)
        except StackmagicError as exc:
            raise StackmagicError(f"cannot load {uri}: {exc}") from None
        with self._explained(uri), self._open_artifact(uri) as stream:
            return materializer.read(stream)

    def exists(self, uri: str) -> bool:
        with self._explained(uri):
            return self._fs.exists(self._path_of(uri))

    def put_bytes(self, data: bytes, uri: str) -> None:
        with self._explained(uri), self._publishing(self._path_of(uri)) as temporary:
            self._fs.pipe_file(temporary, data)

    def put_file(self, local_path: str | os.PathLike[str], uri: str) -> None:
        with self._explained(uri), self._publishing(self._path_of(uri)) as temporary:
            self._fs.put_file(os.fspath(local_path), temporary)

    def get_file(self, uri: str, local_path: str | os.PathLike[str]) -> None:
        """Copy ``uri`` to ``local_path``, which also appears only once complete."""
        target = Path(local_path)
        temporary = target.with_name(_temporary_name(target.name))
        with self._explained(uri), self._open_artifact(uri) as source:
            try:
                with open(temporary, "wb") as destination:
                    shutil.copyfileobj(source, destination, COPY_CHUNK_BYTES)
                os.replace(temporary, target)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise

    def read_bytes(self, uri: str) -> bytes:
        with self._explained(uri):
            return self._fs.cat_file(self._path_of(uri))

    @contextlib.contextmanager
    def reading(self, uri: str) -> Iterator[InputStream]:
        """The file at ``uri`` as a seekable stream: what reads only part of a large file needs."""
        with self._explained(uri), self._open_artifact(uri) as stream:
            yield stream

    def _path_of(self, uri: str) -> str:
        """The filesystem's own path for a URI under this store's root.

        URIs come from the metadata store, which others may write (a team database): one
        that climbs out of the root (``ROOT/../../secrets.json``) is refused, never read.
        """
        if uri == self.root:
            return self._path
        relative = uri[len(self.root) + 1 :] if uri.startswith(self.root + "/") else None
        if relative is None or "\0" in relative or {".", ".."} & set(relative.split("/")):
            raise OutsideStore(
                f"{uri} is not in the artifact store at {self.root}; stackmagic reads and writes "
                "nothing outside it (a record naming it may have been altered)"
            )
        return f"{self._path}/{relative}"

    @contextlib.contextmanager
    def _open_artifact(self, uri: str) -> Iterator[InputStream]:
        with self._fs.open(self._path_of(uri), "rb") as stream:
            yield stream

    @contextlib.contextmanager
    def _explained(self, uri: str) -> Iterator[None]:
        """Turn a storage client's own exception into one line that says what to do."""
        try:
            yield
        except Exception as error:
            if not from_storage(error):
                raise
            if is_missing(error):
                if not self._bucket_exists():
                    raise StackmagicError(
                        f"the bucket of the artifact store {self.root} does not exist; create it, "
                        "or point the store at one that does "
                        "(`stackmagic artifact-store update NAME --path=...`)"
                    ) from None
                raise _missing(uri) from None
            raise storage_failure(self.root, error) from None

    def _bucket_exists(self) -> bool:
        if not self._whole_objects:
            return True
        try:
            return bool(self._fs.exists(self._path.split("/", 1)[0]))
        except Exception:  # cannot tell: say what the first error said
            return True

    def find(self, uri: str) -> list[str]:
        """Every file under the folder ``uri``, temporary ones included, as URIs."""
        return list(self.sizes(uri))

    def sizes(self, uri: str) -> dict[str, int]:
        """Every file under the folder ``uri``, temporary ones included: URI -> bytes."""
        base = self._path_of(uri)
        with self._explained(uri):
            found = self._fs.find(base, detail=True)
        return {
            uri + path[len(base) :]: int(info.get("size") or 0)
            for path, info in sorted(found.items())
            if path.startswith(base + "/")
        }

    def modified(self, uri: str) -> datetime | None:
        """When the file at ``uri`` last changed; None if it is gone or the filesystem cannot tell."""
        with self._explained(uri):
            try:
                moment: datetime = self._fs.modified(self._path_of(uri))
            except (FileNotFoundError, IsADirectoryError, NotImplementedError):
                return None
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

    def delete(self, uris: Collection[str]) -> None:
        """Remove these files, and the local folders that are left empty (never the root)."""
        paths = [self._path_of(uri) for uri in uris]
        with self._explained(self.root):
            try:
                self._fs.rm(paths)
            except FileNotFoundError:  # some went meanwhile (another gc): remove the others
                for path in paths:
                    with contextlib.suppress(FileNotFoundError):
                        self._fs.rm_file(path)
        if isinstance(self._fs, LocalFileSystem):
            for folder in sorted({posixpath.dirname(path) for path in paths}, reverse=True):
                while folder.startswith(self._path + "/") and not os.listdir(folder):
                    os.rmdir(folder)
                    folder = posixpath.dirname(folder)

    def remove_temporaries(self, uri: str) -> None:
        """Remove the temporary files under the folder ``uri``, once nothing writes there:
        what a stopped writer left (a kernel killed half way through saving an artifact)."""
        if not self._whole_objects:  # else uploads go to their names whole: no temporaries
            self.delete([found for found in self.find(uri) if is_temporary(found)])

    @contextlib.contextmanager
    def _writing(self, path: str) -> Iterator[IO[bytes]]:
        """A stream that becomes the file at ``path`` only if the block succeeds.

        For an object store, a local spool file uploaded whole at the end, by
        the filesystem's own upload (parallel parts for a large file): a write
        that fails part way never starts an upload, so there is none to cancel.
        """
        if not self._whole_objects:
            with self._publishing(path) as temporary, self._fs.open(temporary, "wb") as stream:
                yield stream
            return
        with ScratchFolder("upload") as spool:
            local = os.path.join(spool, posixpath.basename(path))
            with open(local, "wb") as stream:
                yield stream
            self._fs.put_file(local, path)

    @contextlib.contextmanager
    def _publishing(self, path: str) -> Iterator[str]:
        """Where to write ``path`` so that readers see all of it or nothing.

        In an object store, the path itself; elsewhere a temporary path beside
        it, moved onto it if the block succeeds, else removed.
        """
        if self._whole_objects:
            yield path
            return
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


def _temporary_name(name: str) -> str:
    return f".{name}.tmp-{secrets.token_hex(8)}"


_TEMPORARY = re.compile(r"\..+\.tmp-[0-9a-f]{16}")


def is_temporary(uri: str) -> bool:
    """Whether ``uri`` is a file being written, or left half-written by a writer that stopped."""
    return _TEMPORARY.fullmatch(posixpath.basename(uri)) is not None


def _missing(uri: str) -> StackmagicError:
    return StackmagicError(
        f"no artifact at {uri}; it may have been deleted from the artifact store — "
        "run the step again"
    )
