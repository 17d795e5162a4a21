"""Metadata store flavors: the database that tracks pipelines, runs and artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import traitlets as t

from .base import MetadataStoreConfig

if TYPE_CHECKING:
    from ..registry import Registry
    from ..stores.metadata import MetadataStore


class SQLiteMetadataStore(MetadataStoreConfig):
    """A SQLite file on this machine (the default)."""

    flavor = "sqlite"
    is_remote = False

    path = t.Unicode(
        "metadata.db",
        help="Database file (default: metadata.db in .stackmagic/); a relative path given in a "
        "command is taken from where you run it.",
    ).tag(local_path=True)

    def open(self, registry: Registry) -> MetadataStore:
        from ..stores.metadata import MetadataStore

        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        return MetadataStore(f"sqlite:///{self.path}", label=self.path)

    def local_paths(self) -> list[Path]:
        """The database and the files SQLite keeps beside it while it writes."""
        return [Path(self.path + suffix) for suffix in ("", "-wal", "-shm", "-journal")]


class _ServerMetadataStore(MetadataStoreConfig):
    """Options shared by the database-server flavors."""

    host = t.Unicode(help="Database server host name or address.").tag(required=True)
    port = t.Int(help="Server port.")
    username = t.Unicode(help="User to connect as.")
    password = t.Unicode(help="Password of that user.").tag(secret=True)
    database = t.Unicode(help="Database (schema) that holds stackmagic's tables.").tag(required=True)
    ssl_ca = t.Unicode(help="CA certificate file to verify the server with (enables TLS).").tag(
        local_path=True
    )
    ssl_cert = t.Unicode(help="Client certificate file, for mutual TLS.").tag(local_path=True)
    ssl_key = t.Unicode(help="Client key file, for mutual TLS.").tag(local_path=True)


class MySQLMetadataStore(_ServerMetadataStore):
    """A MySQL (5.6+) or MariaDB server, shared by a team."""

    flavor = "mysql"

    port = t.Int(3306, help="Server port.")


class PostgreSQLMetadataStore(_ServerMetadataStore):
    """A PostgreSQL server, shared by a team."""

    flavor = "postgresql"

    port = t.Int(5432, help="Server port.")
