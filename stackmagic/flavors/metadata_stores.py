"""Metadata store flavors: the database that tracks pipelines, runs and artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import traitlets as t

from ..errors import StackmagicError
from .base import MetadataStoreConfig, SecretResolver, require_module

if TYPE_CHECKING:
    from sqlalchemy import URL

    from ..stores.metadata import MetadataStore

#: Seconds a database server has to answer before a connection attempt gives up.
CONNECT_TIMEOUT_SECONDS = 10
#: The first bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\0"
#: The operating system's folders: no place for a project's database.
SYSTEM_FOLDERS = tuple(
    Path(folder)
    for folder in (
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/lib",
        "/lib64",
        "/proc",
        "/sbin",
        "/sys",
        "/usr",
        "/private/etc",
        "/System",
    )
)


class SQLiteMetadataStore(MetadataStoreConfig):
    """A SQLite file on this machine (the default)."""

    flavor = "sqlite"
    is_remote = False

    path = t.Unicode(
        "metadata.db",
        help="Database file (default: metadata.db in .stackmagic/); a relative path given in a "
        "command is taken from where you run it.",
    ).tag(local_path=True)

    def open(self, secret: SecretResolver) -> MetadataStore:
        from ..stores.metadata import MetadataStore

        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        return MetadataStore(f"sqlite:///{self.path}", label=self.path)

    def check_given(self) -> None:
        """A new file, an empty one or a SQLite database: SQLite would refuse anything else only
        when a run starts, or write its tables into a file that is not its own."""
        path = Path(self.path)
        system = next((folder for folder in SYSTEM_FOLDERS if path.is_relative_to(folder)), None)
        if system is not None:
            raise StackmagicError(
                f"--path {path} is in the system folder {system}; keep the database in the project "
                "(the default) or in a folder of yours"
            )
        if not path.exists():
            return
        if not path.is_file():
            raise StackmagicError(f"--path {path} exists and is not a file; give a database file")
        try:
            with path.open("rb") as stream:
                header = stream.read(len(SQLITE_HEADER))
        except OSError as error:
            raise StackmagicError(f"--path {path} cannot be read ({error.strerror})") from None
        if header and header != SQLITE_HEADER:
            raise StackmagicError(
                f"--path {path} exists and is not a SQLite database; give a new file name or an "
                "existing database"
            )

    def local_paths(self) -> list[Path]:
        """The database and the files SQLite keeps beside it while it writes."""
        return [Path(self.path + suffix) for suffix in ("", "-wal", "-shm", "-journal")]


class _ServerMetadataStore(MetadataStoreConfig):
    """Options shared by the database-server flavors."""

    #: SQLAlchemy's dialect+driver, the driver's module and the extra that installs it.
    driver: ClassVar[str]
    driver_module: ClassVar[str]
    extra: ClassVar[str]

    host = t.Unicode(help="Database server host name or address.").tag(required=True)
    port = t.Int(help="Server port.")
    username = t.Unicode(help="User to connect as.")
    password = t.Unicode(help="Password of that user.").tag(secret=True)
    database = t.Unicode(help="Database (schema) that holds stackmagic's tables.").tag(
        required=True
    )
    ssl_ca = t.Unicode(help="CA certificate file to verify the server with (enables TLS).").tag(
        local_path=True
    )
    ssl_cert = t.Unicode(help="Client certificate file, for mutual TLS.").tag(local_path=True)
    ssl_key = t.Unicode(help="Client key file, for mutual TLS.").tag(local_path=True)

    def open(self, secret: SecretResolver) -> MetadataStore:
        from ..stores.metadata import MetadataStore

        require_module(self.driver_module, f"the {self.flavor} metadata store", self.extra)
        password = secret("password") if self.password else None
        return MetadataStore(self.url(password), label=self.label, connect_args=self.connect_args())

    @property
    def label(self) -> str:
        """The store as messages name it: where it is, never the password."""
        user = f"{self.username}@" if self.username else ""
        return f"{self.flavor}://{user}{self.host}:{self.port}/{self.database}"

    def url(self, password: str | None) -> URL:
        from sqlalchemy import URL

        return URL.create(
            self.driver,
            username=self.username or None,
            password=password,
            host=self.host,
            port=self.port,
            database=self.database,
            query=self.url_query(),
        )

    def url_query(self) -> dict[str, str]:
        return {}

    def connect_args(self) -> dict[str, Any]:
        return {}


class MySQLMetadataStore(_ServerMetadataStore):
    """A MySQL (5.6+) or MariaDB server, shared by a team."""

    flavor = "mysql"
    driver, driver_module, extra = "mysql+pymysql", "pymysql", "mysql"

    port = t.Int(3306, help="Server port.")

    def url_query(self) -> dict[str, str]:
        return {"charset": "utf8mb4"}  # names and errors in any script

    def connect_args(self) -> dict[str, Any]:
        ssl = {
            key: value
            for key, value in (("ca", self.ssl_ca), ("cert", self.ssl_cert), ("key", self.ssl_key))
            if value
        }
        # a server that accepts but never answers would hold the handshake forever: the read
        # timeout bounds it, and the store lifts it once connected (a migration may take long)
        return {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "read_timeout": CONNECT_TIMEOUT_SECONDS,
            **({"ssl": ssl} if ssl else {}),
        }


class PostgreSQLMetadataStore(_ServerMetadataStore):
    """A PostgreSQL server, shared by a team."""

    flavor = "postgresql"
    driver, driver_module, extra = "postgresql+psycopg", "psycopg", "postgresql"

    port = t.Int(5432, help="Server port.")

    def connect_args(self) -> dict[str, Any]:
        tls: dict[str, Any] = {}
        if self.ssl_ca:
            tls = {"sslmode": "verify-full", "sslrootcert": self.ssl_ca}
        if self.ssl_cert:
            tls |= {"sslcert": self.ssl_cert, "sslkey": self.ssl_key}
        return {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **tls}
