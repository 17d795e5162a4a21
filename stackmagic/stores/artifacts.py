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
import io
import json
import os
import posixpath
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from blake3 import blake3
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
#: Writes from this size on are hashed in parallel with writing them.
PARALLEL_HASH_BYTES = 1 << 20
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
        protocols = {self._fs.protocol} if isinstance(self._fs.protocol, str) else set(self._fs.protocol)
        #: An object store publishes an object whole when its upload completes, so
        #: uploads go straight to the final name; elsewhere, to a temporary one first.
        self._whole_objects = bool(protocols & OBJECT_STORE_PROTOCOLS)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r}, storage_options={self._storage_options!r})"

    def describe(self) -> dict[str, Any]:
        """What another process needs to open this store, without the secret options."""
        return {"root": self.root, "storage_options": dict(self._storage_options)}

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
            with self._explained(location), self._writing(f"{path}.{materializer.extension}") as out:
                yield out

        materializer, hashing = _materialize(value, location, stream)
        return ArtifactInfo(
            uri=f"{location}.{materializer.extension}",
            materializer=materializer.name,
            content_hash=hashing.hexdigest(),
            size=hashing.size,
            type_name=_type_name(value),
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
    def _open_artifact(self, uri: str) -> Iterator[IO[bytes]]:
        with self._fs.open(self._path_of(uri), "rb") as stream:
            yield stream

    @contextlib.contextmanager
    def _explained(self, uri: str) -> Iterator[None]:
        """Turn a storage client's own exception into one line that says what to do."""
        try:
            yield
        except Exception as error:
            if not _from_storage(error):
                raise
            if _is_missing(error):
                if not self._bucket_exists():
                    raise StackmagicError(
                        f"the bucket of the artifact store {self.root} does not exist; create it, "
                        "or point the store at one that does "
                        "(`stackmagic artifact-store update NAME --path=...`)"
                    ) from None
                raise _missing(uri) from None
            raise _failure(self.root, error) from None

    def _bucket_exists(self) -> bool:
        if not self._whole_objects:
            return True
        try:
            return bool(self._fs.exists(self._path.split("/", 1)[0]))
        except Exception:  # cannot tell: say what the first error said
            return True

    def find(self, uri: str) -> list[str]:
        """Every file under the folder ``uri``, temporary ones included, as URIs."""
        base = self._path_of(uri)
        with self._explained(uri):
            found = self._fs.find(base)
        return sorted(uri + path[len(base):] for path in found if path.startswith(base + "/"))

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
        with tempfile.TemporaryDirectory(prefix="stackmagic-upload-") as spool:
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


class _HashingStream(io.RawIOBase):
    """Passes writes through while hashing them, so the bytes are never read twice.

    BLAKE3, a cryptographic hash, runs at several GB/s where SHA-256 manages
    about 1.6: slower than writing to the page cache, so saves would wait on it.

    A large write is hashed in a helper thread while this one writes it: both
    release the GIL, so hashing costs no extra time. Each write waits for its
    hash before returning, so the caller may reuse its buffer at once.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream
        self._digest = blake3()
        self._hasher: ThreadPoolExecutor | None = None
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if view.nbytes < PARALLEL_HASH_BYTES:
            self._stream.write(view)
            self._digest.update(view)
        else:
            if self._hasher is None:
                self._hasher = ThreadPoolExecutor(1, thread_name_prefix="artifact-hash")
            hashed = self._hasher.submit(self._digest.update, view)
            try:
                self._stream.write(view)
            finally:
                hashed.result()
        self.size += view.nbytes
        return view.nbytes

    def close(self) -> None:
        if self._hasher is not None:
            self._hasher.shutdown()
        super().close()

    def tell(self) -> int:
        return self.size

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def fingerprint(value: Any) -> str:
    """The content hash :meth:`ArtifactStore.save` would record for ``value``; nothing is written.

    How a step tells whether it changed an input: equal hashes, equal stored bytes.
    """

    @contextlib.contextmanager
    def discard(materializer: Materializer) -> Iterator[IO[bytes]]:
        yield _Discard()

    return _materialize(value, "a fingerprint", discard)[1].hexdigest()


def _materialize(
    value: Any,
    location: str,
    stream: Callable[[Materializer], contextlib.AbstractContextManager[IO[bytes]]],
) -> tuple[Materializer, _HashingStream]:
    """Write ``value`` with the first materializer that takes it, hashing what it writes."""
    type_name = _type_name(value)
    for materializer in materializers_for(value):
        try:
            with stream(materializer) as out, contextlib.closing(_HashingStream(out)) as hashing:
                _write(materializer, value, hashing, type_name, location)
        except MaterializerUnsuitable:
            continue
        return materializer, hashing
    raise StackmagicError(f"no materializer can save a {type_name} to {location}")


def _type_name(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


class _Discard(io.RawIOBase):
    """A stream that keeps nothing: for hashing what would be written."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return memoryview(data).nbytes


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


#: Packages whose exceptions mean "the storage failed", not "the value or the code is wrong".
_STORAGE_PACKAGES = frozenset({
    "botocore", "aiobotocore", "s3fs", "gcsfs", "google", "adlfs", "azure", "aiohttp",
    "requests", "urllib3", "fsspec",
})


def _from_storage(error: Exception) -> bool:
    if isinstance(error, (StackmagicError, MaterializerUnsuitable)):
        return False
    return isinstance(error, OSError) or type(error).__module__.split(".")[0] in _STORAGE_PACKAGES


def _is_missing(error: Exception) -> bool:
    return isinstance(error, FileNotFoundError) or type(error).__name__ == "ResourceNotFoundError"


def _failure(root: str, error: Exception) -> StackmagicError:
    """Refused credentials, an unreachable service, or something else, in one line."""
    lines = str(error).strip().splitlines()
    reason = (lines[0] if lines else type(error).__name__)[:200]
    status = next((getattr(error, name) for name in ("status_code", "status", "code")
                   if isinstance(getattr(error, name, None), int)), None)
    kind = type(error).__name__
    if isinstance(error, PermissionError) or status in (401, 403) or "Authentication" in kind:
        return StackmagicError(
            f"the artifact store {root} refused access ({reason}); check its credentials "
            "(`stackmagic artifact-store describe NAME`)"
        )
    if isinstance(error, (ConnectionError, TimeoutError)) or any(
        word in kind for word in ("Connect", "ServiceRequest", "Timeout")
    ):
        return StackmagicError(
            f"cannot reach the artifact store {root} ({reason}); check the network, and "
            "--endpoint-url if the store has one"
        )
    return StackmagicError(f"the artifact store {root} failed ({kind}: {reason})")


def _temporary_name(name: str) -> str:
    return f".{name}.tmp-{secrets.token_hex(8)}"


def _missing(uri: str) -> StackmagicError:
    return StackmagicError(
        f"no artifact at {uri}; it may have been deleted from the artifact store — "
        "run the step again"
    )
