"""Real servers on 127.0.0.1 for tests that must cross a real connection.

Object stores run as emulators that the session starts (moto for S3, gcp-storage-emulator for
GCS, Azurite for Azure Blob); MariaDB and PostgreSQL are the machine's own servers, in which each
test gets a fresh database. Nothing here talks to any address but 127.0.0.1.

A service that cannot be started or reached skips its tests, or fails them when
STACKMAGIC_REQUIRE_SERVICES is set (as CI does), so a broken install cannot hide behind skips.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest
from sqlalchemy import create_engine, text

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent
EMULATORS = Path(__file__).parent / "emulators"
STARTUP_TIMEOUT = 30.0

# Azurite's development account: name and key are public, fixed, and documented by Microsoft.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
# moto accepts any credentials; explicit ones keep the developer's AWS config out of the tests.
S3_KEY = S3_SECRET = "testing"
#: The team database user's password and the S3 secret key of team stacks: searched for
#: wherever a secret must never appear.
DB_CANARY = "CANARY-db-" + secrets.token_hex(6)
S3_CANARY = "CANARY-s3-" + secrets.token_hex(6)


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str


@dataclass(frozen=True)
class GCSServer:
    endpoint_url: str


@dataclass(frozen=True)
class AzuriteServer:
    connection_string: str
    account_name: str
    account_key: str
    endpoint_url: str


@dataclass(frozen=True)
class Database:
    url: str
    host: str
    port: int
    username: str
    database: str


ObjectStoreServer = S3Server | GCSServer | AzuriteServer


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail where services are required, with a one-line reason."""
    reason = " ".join(reason.split())
    if os.environ.get("STACKMAGIC_REQUIRE_SERVICES"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A port nothing listens on now (the OS picks it), for a server about to start."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_open(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def unique_name(prefix: str) -> str:
    """Lowercase, so valid as a bucket, container or database name everywhere."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def _import(module: str) -> ModuleType:
    """Import lazily: a missing optional client skips its tests instead of breaking conftest."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        unavailable(f"{module} is not installed: {error}")


def _tail(log: Path, lines: int = 5) -> str:
    text = log.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) or "(no output)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def serve(name: str, argv: list[str], port: int, workdir: Path) -> Iterator[None]:
    """Run a server until the block ends, once its port accepts connections.

    Output goes to a log file in ``workdir`` (a pipe nobody reads would fill up and stall it).
    """
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        try:
            process = subprocess.Popen(
                argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        except OSError as error:
            unavailable(f"{name}: cannot run {argv[0]}: {error}")
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while not port_open(port, timeout=0.5):
                if process.poll() is not None:
                    unavailable(f"{name} exited with {process.returncode}: {_tail(log)}")
                if time.monotonic() > deadline:
                    unavailable(f"{name} not listening after {STARTUP_TIMEOUT:.0f} s: {_tail(log)}")
                time.sleep(0.1)
            yield
        finally:
            _stop(process)


def _disable_gcsfs_grpc_probe() -> None:
    # gcsfs reads this when it is first imported. Left at its default ("true"), gcsfs uses its
    # ExtendedGcsFileSystem, which asks every bucket over gRPC whether it is zonal/hierarchical;
    # the emulator speaks no gRPC, so each first access to a bucket hangs for 60 s.
    # setdefault: a developer who sets the variable keeps their value.
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


# At import, too: conftest imports this module before any test can import gcsfs, which would
# be too late for the fixture's own call.
_disable_gcsfs_grpc_probe()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server, in memory, for the whole session."""
    port = free_port()
    argv = [str(BIN / "moto_server"), "-H", HOST, "-p", str(port)]
    with serve("moto_server", argv, port, tmp_path_factory.mktemp("moto")):
        yield S3Server(endpoint_url=f"http://{HOST}:{port}")


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSServer]:
    """gcp-storage-emulator, in memory, for the whole session (use gcsfs with token="anon")."""
    _disable_gcsfs_grpc_probe()
    port = free_port()
    argv = [
        str(BIN / "gcp-storage-emulator"), "start",
        "--host", HOST, "--port", str(port), "--in-memory",
    ]  # fmt: skip
    with serve("gcp-storage-emulator", argv, port, tmp_path_factory.mktemp("gcs")):
        yield GCSServer(endpoint_url=f"http://{HOST}:{port}")


def azurite_executable() -> Path | None:
    """The pinned Azurite from tests/emulators (``npm ci --prefix tests/emulators``), else PATH."""
    local = EMULATORS / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return local
    found = shutil.which("azurite-blob")
    return Path(found) if found else None


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    """Azurite's Blob service, in memory, for the whole session.

    It runs in a temporary folder: ``--location`` is refused beside ``--inMemoryPersistence``.
    """
    executable = azurite_executable()
    if executable is None:
        unavailable("azurite-blob not found: run npm ci --prefix tests/emulators")
    port = free_port()
    workdir = tmp_path_factory.mktemp("azurite")
    argv = [
        str(executable),
        "--inMemoryPersistence",
        "--blobHost", HOST,
        "--blobPort", str(port),
        # Accept the API versions of whatever azure-storage-blob is installed.
        "--skipApiVersionCheck",
        "--loose",
        "--silent",
        # Azurite otherwise sends usage data to Application Insights, off this machine.
        "--disableTelemetry",
    ]  # fmt: skip
    endpoint = f"http://{HOST}:{port}/{AZURITE_ACCOUNT}"
    with serve("azurite-blob", argv, port, workdir):
        yield AzuriteServer(
            connection_string=(
                f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
            ),
            account_name=AZURITE_ACCOUNT,
            account_key=AZURITE_KEY,
            endpoint_url=endpoint,
        )


SERVER_FIXTURES = {"s3": "s3_server", "gcs": "gcs_server", "azure": "azurite_server"}
SCHEMES = {"s3": "s3", "gcs": "gs", "azure": "az"}
SERVER_TYPES: dict[str, type[ObjectStoreServer]] = {
    "s3": S3Server,
    "gcs": GCSServer,
    "azure": AzuriteServer,
}


def storage_options(kind: str, server: ObjectStoreServer) -> dict[str, Any]:
    """The fsspec keyword arguments that reach ``server``: ``fsspec.filesystem(scheme, **these)``."""
    if not isinstance(server, SERVER_TYPES[kind]):
        raise TypeError(f"{kind!r} needs a {SERVER_TYPES[kind].__name__}, not {server!r}")
    if isinstance(server, S3Server):
        return {"key": S3_KEY, "secret": S3_SECRET, "endpoint_url": server.endpoint_url}
    if isinstance(server, GCSServer):
        return {"endpoint_url": server.endpoint_url, "token": "anon"}
    return {"connection_string": server.connection_string}


def filesystem(kind: str, server: ObjectStoreServer) -> Any:
    """An fsspec filesystem on ``server``, built as stackmagic would: by scheme and options."""
    fsspec = _import("fsspec")
    _import({"s3": "s3fs", "gcs": "gcsfs", "azure": "adlfs"}[kind])
    return fsspec.filesystem(SCHEMES[kind], **storage_options(kind, server))


@pytest.fixture
def bucket(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``make_bucket(kind)``: a new, empty bucket on that kind's server; returns a folder URL in it.

    kind is "s3", "gcs" or "azure"; only the servers asked for are started.
    """

    def make_bucket(kind: str) -> str:
        if kind not in SERVER_FIXTURES:
            raise ValueError(f"kind must be one of {sorted(SERVER_FIXTURES)}, not {kind!r}")
        server = request.getfixturevalue(SERVER_FIXTURES[kind])
        name = unique_name("sm-")
        # gcsfs creates a bucket from a bare name whatever create_parents says; s3fs and adlfs too.
        filesystem(kind, server).mkdir(name)
        return f"{SCHEMES[kind]}://{name}/store"

    return make_bucket


def _require_port(name: str, port: int) -> None:
    if not port_open(port, timeout=2.0):
        unavailable(f"{name} is not reachable on {HOST}:{port}")


def _fresh_database(
    server: str,
    port: int,
    user: str,
    driver: str,
    admin_database: str,
    drop: Callable[[Any, str], None],
) -> Iterator[Database]:
    """A new database on one of the machine's servers; ``drop`` removes it, whatever is open on it."""
    _require_port(server, port)
    _import(driver.split("+")[1])
    sqlalchemy = _import("sqlalchemy")
    name = unique_name("sm_")
    admin = sqlalchemy.create_engine(
        f"{driver}://{user}@{HOST}:{port}/{admin_database}", isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
    except sqlalchemy.exc.DBAPIError as error:
        admin.dispose()
        unavailable(f"{server} on {HOST}:{port}: {error.orig}")
    try:
        yield Database(
            url=f"{driver}://{user}@{HOST}:{port}/{name}",
            host=HOST,
            port=port,
            username=user,
            database=name,
        )
        with admin.connect() as connection:
            drop(connection, name)
    finally:
        admin.dispose()


def _drop_mariadb_database(connection: Any, name: str) -> None:
    # A connection the test left open would hold a lock and stall DROP DATABASE.
    others = connection.exec_driver_sql(
        "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
        (name,),
    ).scalars()
    for connection_id in list(others):
        with contextlib.suppress(Exception):  # it ended by itself meanwhile
            connection.exec_driver_sql(f"KILL {int(connection_id)}")
    connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")


def _drop_postgresql_database(connection: Any, name: str) -> None:
    # FORCE ends connections the test left open, which would otherwise block the drop.
    connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def mysql_database() -> Iterator[Database]:
    """A fresh database on the machine's MariaDB (root, no password), dropped afterwards."""
    yield from _fresh_database("MariaDB", 3306, "root", "mysql+pymysql", "", _drop_mariadb_database)


@pytest.fixture
def postgresql_database() -> Iterator[Database]:
    """A fresh database on the machine's PostgreSQL (postgres, trust auth), dropped afterwards."""
    yield from _fresh_database(
        "PostgreSQL", 5432, "postgres", "postgresql+psycopg", "postgres", _drop_postgresql_database
    )


@pytest.fixture
def team_database(mysql_database: Database) -> Iterator[Database]:
    """The fresh MariaDB database, reached as a user of its own whose password is a canary."""
    user = unique_name("smu_")
    admin = create_engine("mysql+pymysql://root@127.0.0.1:3306/")
    with admin.begin() as connection:
        connection.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{DB_CANARY}'"))
        connection.execute(text(f"GRANT ALL ON `{mysql_database.database}`.* TO '{user}'@'%'"))
    yield Database(
        url=mysql_database.url.replace("root@", f"{user}@"),
        host=mysql_database.host,
        port=mysql_database.port,
        username=user,
        database=mysql_database.database,
    )
    with admin.begin() as connection:
        connection.execute(text(f"DROP USER '{user}'@'%'"))
    admin.dispose()
