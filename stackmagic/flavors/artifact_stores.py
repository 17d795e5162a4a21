"""Artifact store flavors: where step outputs, bundles and executed notebooks are kept."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import traitlets as t

from .base import ArtifactStoreConfig

if TYPE_CHECKING:
    from ..registry import Registry
    from ..stores.artifacts import ArtifactStore


def _url_validator(*schemes: str):
    """A traitlets validator that accepts only URLs of the given schemes."""

    pattern = re.compile(rf"^({'|'.join(schemes)})://[^/\s]+(/\S*)?$")

    def check(self: Any, proposal: dict[str, Any]) -> str:
        url = proposal["value"].rstrip("/")
        if not pattern.match(url):
            examples = " or ".join(f"{scheme}://bucket/dir" for scheme in schemes)
            raise t.TraitError(f"expects a URL like {examples}, not {proposal['value']!r}")
        return url

    return t.validate("path")(check)


class LocalArtifactStore(ArtifactStoreConfig):
    """A folder on this machine (the default)."""

    flavor = "local"
    is_remote = False

    path = t.Unicode(
        "artifacts",
        help="Folder that holds the artifacts (default: artifacts/ in .stackmagic/); a relative "
        "path given in a command is taken from where you run it.",
    ).tag(local_path=True)

    def open(self, registry: Registry) -> ArtifactStore:
        from ..stores.artifacts import ArtifactStore

        return ArtifactStore(self.path)

    def local_paths(self) -> list[Path]:
        return [Path(self.path)]


class GCSArtifactStore(ArtifactStoreConfig):
    """A Google Cloud Storage bucket (gs://), through gcsfs."""

    flavor = "gcp"

    path = t.Unicode(help="Bucket and folder, gs://bucket/dir.").tag(required=True)
    project = t.Unicode(help="Google Cloud project that owns the bucket.")
    service_account_file = t.Unicode(
        help="Service-account key file; default: the environment's application default credentials.",
    ).tag(local_path=True)
    endpoint_url = t.Unicode(help="Storage API endpoint, for emulators.")

    _check_path = _url_validator("gs")


class S3ArtifactStore(ArtifactStoreConfig):
    """An AWS S3 (or S3-compatible) bucket (s3://), through s3fs."""

    flavor = "s3"

    path = t.Unicode(help="Bucket and folder, s3://bucket/dir.").tag(required=True)
    region = t.Unicode(help="AWS region of the bucket.")
    profile = t.Unicode(help="AWS profile to take credentials from.")
    access_key_id = t.Unicode(help="AWS access key id; default: the usual AWS credential chain.")
    secret_access_key = t.Unicode(help="AWS secret access key.").tag(secret=True)
    session_token = t.Unicode(help="AWS session token, for temporary credentials.").tag(secret=True)
    endpoint_url = t.Unicode(help="S3 endpoint, for MinIO, emulators and other S3-compatible servers.")

    _check_path = _url_validator("s3")


class AzureArtifactStore(ArtifactStoreConfig):
    """An Azure Blob Storage container (az:// or abfs://), through adlfs."""

    flavor = "azure"

    path = t.Unicode(help="Container and folder, az://container/dir.").tag(required=True)
    account_name = t.Unicode(help="Storage account name.")
    account_key = t.Unicode(help="Storage account key.").tag(secret=True)
    connection_string = t.Unicode(help="Storage connection string.").tag(secret=True)
    sas_token = t.Unicode(help="Shared access signature token.").tag(secret=True)

    _check_path = _url_validator("az", "abfs", "abfss")
