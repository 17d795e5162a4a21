"""A storage client's exception, told apart from the user's and said in one line."""

from __future__ import annotations

from ..errors import StackmagicError
from .materializers import MaterializerUnsuitable

#: Packages whose exceptions mean "the storage failed", not "the value or the code is wrong".
_STORAGE_PACKAGES = frozenset(
    {
        "botocore",
        "aiobotocore",
        "s3fs",
        "gcsfs",
        "google",
        "adlfs",
        "azure",
        "aiohttp",
        "requests",
        "urllib3",
        "fsspec",
    }
)


def from_storage(error: Exception) -> bool:
    if isinstance(error, (StackmagicError, MaterializerUnsuitable)):
        return False
    return isinstance(error, OSError) or type(error).__module__.split(".")[0] in _STORAGE_PACKAGES


def is_missing(error: Exception) -> bool:
    return isinstance(error, FileNotFoundError) or type(error).__name__ == "ResourceNotFoundError"


def storage_failure(root: str, error: Exception) -> StackmagicError:
    """Refused credentials, an unreachable service, or something else, in one line."""
    lines = str(error).strip().splitlines()
    reason = (lines[0] if lines else type(error).__name__)[:200]
    status = next(
        (
            getattr(error, name)
            for name in ("status_code", "status", "code")
            if isinstance(getattr(error, name, None), int)
        ),
        None,
    )
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
