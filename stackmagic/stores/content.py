"""How a value becomes the bytes an artifact store keeps, and the hash of those bytes."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from blake3 import blake3

from ..errors import StackmagicError
from .materializers import Materializer, MaterializerUnsuitable, OutputStream, materializers_for

#: Writes from this size on are hashed in parallel with writing them.
PARALLEL_HASH_BYTES = 1 << 20


class HashingStream(io.RawIOBase):
    """Passes writes through while hashing them, so the bytes are never read twice.

    BLAKE3, a cryptographic hash, runs at several GB/s where SHA-256 manages
    about 1.6: slower than writing to the page cache, so saves would wait on it.

    A large write is hashed in a helper thread while this one writes it: both
    release the GIL, so hashing costs no extra time. Each write waits for its
    hash before returning, so the caller may reuse its buffer at once.
    """

    def __init__(self, stream: OutputStream) -> None:
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
    """The content hash :meth:`~stackmagic.stores.artifacts.ArtifactStore.save` would record for ``value``; nothing is written.

    How a step tells whether it changed an input: equal hashes, equal stored bytes.
    """

    @contextlib.contextmanager
    def discard(materializer: Materializer) -> Iterator[OutputStream]:
        yield _Discard()

    return materialize(value, "a fingerprint", discard)[1].hexdigest()


def materialize(
    value: Any,
    location: str,
    stream: Callable[[Materializer], contextlib.AbstractContextManager[OutputStream]],
) -> tuple[Materializer, HashingStream]:
    """Write ``value`` with the first materializer that takes it, hashing what it writes."""
    name = type_name(value)
    for materializer in materializers_for(value):
        try:
            with stream(materializer) as out, contextlib.closing(HashingStream(out)) as hashing:
                _write(materializer, value, hashing, name, location)
        except MaterializerUnsuitable:
            continue
        return materializer, hashing
    raise StackmagicError(f"no materializer can save a {name} to {location}")


def type_name(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


class _Discard(io.RawIOBase):
    """A stream that keeps nothing: for hashing what would be written."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return memoryview(data).nbytes


def _write(
    materializer: Materializer, value: Any, stream: OutputStream, type_name: str, location: str
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
