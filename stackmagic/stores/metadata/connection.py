"""The store's connection: engines, sessions and the schema, for SQLite and database servers.

On SQLite, write transactions start with ``BEGIN IMMEDIATE`` and wait up to
``BUSY_TIMEOUT_SECONDS`` for another writer, and the file is in WAL mode, so
readers never block writers and two pipelines running at once lose nothing and
never see "database is locked". The schema is brought up to date by Alembic
migrations the first time a store is opened by a newer stackmagic.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import URL, Connection, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ...errors import StackmagicError
from ..models import SCHEMA_REVISION

if TYPE_CHECKING:
    from . import MetadataStore

BUSY_TIMEOUT_SECONDS = 60
_LOCK_NAME = "stackmagic_schema_upgrade"
_LOCK_KEY = 0x5354_4B4D_4147  # any fixed number: the advisory lock's name on PostgreSQL
_WRITE = "stackmagic_write"


class RecordMirror(Protocol):
    """Hears of runs and steps as they are recorded: a stack's experiment tracker's mirror."""

    def run_created(self, store: MetadataStore, run_id: str) -> None: ...

    def step_ended(self, store: MetadataStore, run_id: str, step: str) -> None: ...

    def run_ended(self, store: MetadataStore, run_id: str) -> None: ...


class StoreConnection:
    """Opens the database, brings its schema up to date and hands out short transactions."""

    #: told of each run recorded, step ended and run ended, once it is written
    mirror: RecordMirror | None = None

    def __init__(
        self,
        url: str | URL,
        *,
        label: str | None = None,
        connect_args: Mapping[str, Any] | None = None,
    ) -> None:
        """``label`` names the store in messages (a path, or a server without its password)."""
        self.engine = _create_engine(url, connect_args or {})
        self.label = label or str(url)
        self._writer = self.engine.execution_options(**{_WRITE: True})
        try:
            self._migrate()
        except DBAPIError as error:
            self.engine.dispose()
            raise StackmagicError(
                f"cannot open the metadata store {self.label} ({_reason(error)}); {_advice(error)}"
            ) from None

    def close(self) -> None:
        self.engine.dispose()

    def _mirror_run_created(self, run_id: str) -> None:
        if self.mirror is not None:
            self.mirror.run_created(self._as_store(), run_id)

    def _mirror_step_ended(self, run_id: str, step: str) -> None:
        if self.mirror is not None:
            self.mirror.step_ended(self._as_store(), run_id, step)

    def _mirror_run_ended(self, run_id: str) -> None:
        if self.mirror is not None:
            self.mirror.run_ended(self._as_store(), run_id)

    def _as_store(self) -> MetadataStore:
        """Every opened store is a :class:`MetadataStore`, which this class is part of."""
        return cast("MetadataStore", self)

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        try:
            with Session(self._writer if write else self.engine, expire_on_commit=False) as session:
                with session.begin():
                    yield session
        except DBAPIError as error:  # the server went away, a disk filled up...
            raise StackmagicError(
                f"the metadata store {self.label} failed ({_reason(error)}); {_advice(error)}"
            ) from None

    def _migrate(self) -> None:
        """Bring the schema up to date, once, even when several processes open a new store at once."""
        with self._writer.connect() as connection, connection.begin(), _migration_lock(connection):
            revision = None
            if inspect(connection).has_table("alembic_version"):
                revision = connection.execute(
                    text("SELECT version_num FROM alembic_version")
                ).scalar()
            if revision == SCHEMA_REVISION:
                return
            if revision is not None and revision > SCHEMA_REVISION:
                raise StackmagicError(
                    f"the metadata store {self.label} was written by a newer stackmagic "
                    f"(schema {revision}); upgrade stackmagic (`pip install -U stackmagic`)"
                )
            from alembic import command
            from alembic.config import Config

            config = Config()
            config.set_main_option("script_location", "stackmagic.stores:migrations")
            config.attributes["connection"] = connection
            command.upgrade(config, SCHEMA_REVISION)


def _create_engine(url: str | URL, connect_args: Mapping[str, Any]) -> Engine:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS, **connect_args})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(
        url,
        connect_args=dict(connect_args),
        # each transaction sees what others committed before it: a pipeline row another
        # process just made is found, not hidden by MySQL's repeatable-read snapshot
        isolation_level="READ COMMITTED",
        pool_pre_ping=True,  # a kernel's connection may have idled past the server's timeout
        pool_recycle=3600,
    )
    if backend == "mysql":
        event.listen(engine, "connect", _lift_read_timeout)
    return engine


def _lift_read_timeout(dbapi_connection: Any, _record: Any) -> None:
    """PyMySQL's read timeout bounds the handshake; after it, queries may take their time."""
    if hasattr(dbapi_connection, "_read_timeout"):
        dbapi_connection._read_timeout = None


@contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    """Serialise schema upgrades across processes on a database server.

    SQLite's ``BEGIN IMMEDIATE`` already does; MySQL's DDL commits as it goes,
    so there a named lock is held for the session instead.
    """
    backend = connection.dialect.name
    if backend == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    elif backend in ("mysql", "mariadb"):
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :wait)"),
            {"name": _LOCK_NAME, "wait": BUSY_TIMEOUT_SECONDS},
        ).scalar()
        if got != 1:
            raise StackmagicError(
                f"another process has been upgrading the metadata store for {BUSY_TIMEOUT_SECONDS} s; "
                "try again when it is done"
            )
        try:
            yield
        finally:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _LOCK_NAME})
        return
    yield


def _reason(error: DBAPIError) -> str:
    """The driver's own words, without codes, SQL or the server's address twice."""
    original = error.orig
    if original is None:
        return type(error).__name__
    args = original.args
    if len(args) == 2 and isinstance(args[0], int):  # PyMySQL: (code, message)
        return str(args[1]).splitlines()[0]
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return lines[0] if lines else type(original).__name__


def _advice(error: DBAPIError) -> str:
    """What a user can do about the commonest failures."""
    said = str(error.orig).lower()
    for words, advice in _ADVICE:
        if any(word in said for word in words):
            return advice
    return "check its settings (`stackmagic metadata-store describe NAME`)"


_ADVICE = (
    (
        ("' to database '",),  # MySQL says this alike of a missing database and a forbidden one
        "create that database on the server, or fix --database, or grant the user its use",
    ),
    (
        ("access denied for user", "password authentication failed", "no password supplied"),
        "check --username and --password (`stackmagic metadata-store update NAME --password=-`)",
    ),
    (
        ('role "',),  # PostgreSQL: 'role "ann" does not exist', the user --username names
        "that user (role) does not exist on the server: create it (CREATE ROLE NAME LOGIN) "
        "or fix --username",
    ),
    (
        ("unknown database", "does not exist"),
        "create that database on the server, or fix --database",
    ),
    (
        ("command denied", "permission denied", "access denied"),
        "grant the user CREATE, ALTER, INDEX, SELECT, INSERT, UPDATE and DELETE on that database",
    ),
    (
        (
            "can't connect",
            "connection refused",
            "timed out",
            "timeout expired",
            "name or service not known",
            "could not translate host name",
            "nodename nor servname",
        ),
        "check that the server is running and reachable at --host and --port",
    ),
)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event starts transactions
    cursor = dbapi_connection.cursor()
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        _switch_to_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """Once per database file; the switch needs the file to itself, so it waits its turn."""
    import sqlite3

    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sqlite_begin(connection: Any) -> None:
    """Writers take the write lock up front: a deferred one could not wait for it, only fail."""
    write = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
