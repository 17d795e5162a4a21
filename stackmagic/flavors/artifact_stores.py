"""Artifact store flavors: where step outputs, bundles and executed notebooks are kept."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import traitlets as t

from .base import ArtifactStoreConfig, SecretResolver, require_module

if TYPE_CHECKING:
    from ..stores.artifacts import ArtifactStore


def _url_validator(*schemes: str) -> t.ValidateHandler:
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

    def open(self, secret: SecretResolver) -> ArtifactStore:
        from ..stores.artifacts import ArtifactStore

        return ArtifactStore(self.path)

    def local_paths(self) -> list[Path]:
        return [Path(self.path)]


class _BucketArtifactStore(ArtifactStoreConfig):
    """What the cloud-bucket flavors share: an fsspec filesystem from an optional extra."""

    #: The fsspec implementation's module and the extra that installs it.
    driver_module: ClassVar[str]
    extra: ClassVar[str]
    #: Option names that fsspec knows by another name.
    fsspec_names: ClassVar[dict[str, str]] = {}
    #: The bucket and folder, a URL each flavor declares and checks with its own scheme.
    path: str

    def open(self, secret: SecretResolver) -> ArtifactStore:
        from ..stores.artifacts import ArtifactStore

        for variable, value in self.import_environment().items():
            os.environ.setdefault(variable, value)  # a user's own setting wins
        require_module(self.driver_module, f"the {self.flavor} artifact store", self.extra)
        secrets = {
            self.fsspec_names.get(name, name): secret(name) for name in self.secret_references()
        }
        return ArtifactStore(self.path, self.storage_options(), secret_options=secrets)

    def storage_options(self) -> dict[str, Any]:
        """fsspec's options for this bucket, secrets aside."""
        raise NotImplementedError

    def import_environment(self) -> dict[str, str]:
        """Environment variables the filesystem's package reads once, when it is imported."""
        return {}


class GCSArtifactStore(_BucketArtifactStore):
    """A Google Cloud Storage bucket (gs://), through gcsfs."""

    flavor = "gcp"
    driver_module, extra = "gcsfs", "gcp"

    path = t.Unicode(help="Bucket and folder, gs://bucket/dir.").tag(required=True)
    project = t.Unicode(help="Google Cloud project that owns the bucket.")
    service_account_file = t.Unicode(
        help="Service-account key file; default: the environment's application default credentials.",
    ).tag(local_path=True)
    anonymous = t.Bool(False, help="Use no credentials (public buckets, emulators).")
    endpoint_url = t.Unicode(help="Storage API endpoint, for emulators.")

    _check_path = _url_validator("gs")

    def storage_options(self) -> dict[str, Any]:
        token = "anon" if self.anonymous else self.service_account_file or None
        return _given(project=self.project, token=token, endpoint_url=self.endpoint_url)

    def import_environment(self) -> dict[str, str]:
        # gcsfs otherwise probes a gRPC endpoint an emulator lacks, for a minute
        return {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"} if self.endpoint_url else {}


class S3ArtifactStore(_BucketArtifactStore):
    """An AWS S3 (or S3-compatible) bucket (s3://), through s3fs."""

    flavor = "s3"
    driver_module, extra = "s3fs", "s3"
    fsspec_names = {"secret_access_key": "secret", "session_token": "token"}

    path = t.Unicode(help="Bucket and folder, s3://bucket/dir.").tag(required=True)
    region = t.Unicode(help="AWS region of the bucket.")
    profile = t.Unicode(help="AWS profile to take credentials from.")
    access_key_id = t.Unicode(help="AWS access key id; default: the usual AWS credential chain.")
    secret_access_key = t.Unicode(help="AWS secret access key.").tag(secret=True)
    session_token = t.Unicode(help="AWS session token, for temporary credentials.").tag(secret=True)
    anonymous = t.Bool(False, help="Use no credentials (public buckets).")
    endpoint_url = t.Unicode(
        help="S3 endpoint, for MinIO, emulators and other S3-compatible servers."
    )

    _check_path = _url_validator("s3")

    def storage_options(self) -> dict[str, Any]:
        return _given(
            key=self.access_key_id,
            profile=self.profile,
            anon=self.anonymous,
            endpoint_url=self.endpoint_url,
            client_kwargs=_given(region_name=self.region),
        )


class AzureArtifactStore(_BucketArtifactStore):
    """An Azure Blob Storage container (az:// or abfs://), through adlfs."""

    flavor = "azure"
    driver_module, extra = "adlfs", "azure"

    path = t.Unicode(help="Container and folder, az://container/dir.").tag(required=True)
    account_name = t.Unicode(help="Storage account name.")
    account_key = t.Unicode(help="Storage account key.").tag(secret=True)
    connection_string = t.Unicode(
        help="Storage connection string (Azurite's, for the emulator)."
    ).tag(secret=True)
    sas_token = t.Unicode(help="Shared access signature token.").tag(secret=True)
    anonymous = t.Bool(False, help="Use no credentials (public containers).")

    _check_path = _url_validator("az", "abfs", "abfss")

    def storage_options(self) -> dict[str, Any]:
        return _given(account_name=self.account_name, anon=self.anonymous)


def _given(**options: Any) -> dict[str, Any]:
    """The options that were set: fsspec's own defaults stand for the rest."""
    return {name: value for name, value in options.items() if value not in ("", None, False, {})}
