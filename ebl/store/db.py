"""Engines, migrations and sessions, on SQLite (the embedded default) or PostgreSQL (psycopg 3).

SQLite runs in WAL mode with ``synchronous=FULL``, so a committed write survives a crash, and every writer takes the
database's write lock when its transaction begins. On PostgreSQL writers run concurrently under READ COMMITTED; the
repositories take the row locks that keep one possessor per eBL and one writer at a time at the end of the log.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect
from sqlalchemy.engine import Connection, Engine, make_url
from sqlmodel import Session, create_engine

_WRITE = "ebl_write"
_CONNECTION = "ebl_connection"


class DatabaseSetupError(RuntimeError):
    """The database cannot be used as configured: an unsupported URL, or a schema migrations cannot bring up."""


SUPPORTED_BACKENDS = {"sqlite": "sqlite:///path/to/ebl.db", "postgresql": "postgresql+psycopg://user@host/database"}
# Any fixed number will do: it names the lock that lets one process at a time migrate a PostgreSQL database.
_MIGRATION_LOCK = 0x6562_6C00


def make_engine(url: str, *, pool_size: int = 20) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise DatabaseSetupError(
                f"PostgreSQL is reached through psycopg 3: write the URL as {SUPPORTED_BACKENDS[backend]}"
            )
        return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)
    if backend != "sqlite":
        raise DatabaseSetupError(
            f"unsupported database {backend!r}; use one of {', '.join(SUPPORTED_BACKENDS.values())}"
        )
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # As many pooled connections as request threads: a connection opened past the pool would be closed again after
    # one request, and every new SQLite connection pays for its PRAGMAs.
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=pool_size, max_overflow=pool_size
    )

    writer = _SQLITE_WRITERS[engine] = _SqliteWriter()
    # dispose() closes only the connections in the pool, not the one the writer keeps.
    event.listen(engine, "engine_disposed", lambda _engine: writer.close())

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how each transaction starts (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # A writer takes the write lock up front: a read-then-write transaction that upgraded its lock later
        # could fail with SQLITE_BUSY instead of waiting its turn.
        immediate = connection.get_execution_options().get(_WRITE, False)
        # Straight to the driver: this runs at the start of every transaction.
        connection.connection.driver_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _alembic(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", "ebl.store:migrations")
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``, the latest migration by default (Alembic), one process at a time."""
    with engine.connect().execution_options(**{_WRITE: True}) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        tables = set(inspect(connection).get_table_names())
        if "chain_entry" in tables and "alembic_version" not in tables:
            raise DatabaseSetupError(
                "this database was created before the schema had migrations; it holds sandbox data only: "
                "move it away and start again"
            )
        command.upgrade(_alembic(connection), revision)


def schema_revision(engine: Engine) -> tuple[str | None, str]:
    """The database's migration revision and the latest one this code knows."""
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        head = ScriptDirectory.from_config(_alembic(connection)).get_current_head()
    assert head is not None
    return current, head


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any exception."""
    with (
        _write_connection(engine) as connection,
        connection.begin(),
        # The session joins the connection's transaction, which commits when the block ends (a Session that
        # managed its own transaction costs ~50 µs more on each one).
        Session(bind=connection, expire_on_commit=False, join_transaction_mode="rollback_only") as session,
    ):
        session.info[_CONNECTION] = connection
        yield session
        session.flush()


def driver_connection(session: Session) -> Any:
    """The database driver's connection under ``session``'s transaction, for SQL sent to the driver directly.

    A write session hands over its connection without starting the ORM's own bookkeeping, which a transaction that
    only sends plain SQL (a log append, a checkpoint) then never pays for.
    """
    connection = session.info.get(_CONNECTION) or session.connection()
    return connection.connection.driver_connection


class _SqliteWriter:
    """The one connection through which the threads of this process write to a SQLite database, in turns.

    SQLite admits one writer at a time whatever happens here; this is scheduling, not correctness. A writer that
    found the database locked would sleep in SQLite's busy handler, for up to 100 ms at a time, while a thread
    waiting on a Python lock wakes the moment the lock is free: under load, the difference between a queue and a
    p99 of seconds. And since writers take turns anyway, they share one connection that stays open: checking a
    connection out of the pool and back in (with its reset) cost each write ~60 µs of CPU, a sixth of a durable
    log append (bench/log.py).
    """

    def __init__(self) -> None:
        self._turn = threading.Lock()
        self._connection: Connection | None = None

    @contextmanager
    def connection(self, engine: Engine) -> Iterator[Connection]:
        with self._turn:
            if self._connection is None or self._connection.invalidated:
                self._connection = engine.connect().execution_options(**{_WRITE: True})
            yield self._connection

    def close(self) -> None:
        with self._turn:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


_SQLITE_WRITERS: WeakKeyDictionary[Engine, _SqliteWriter] = WeakKeyDictionary()


@contextmanager
def _write_connection(engine: Engine) -> Iterator[Connection]:
    writer = _SQLITE_WRITERS.get(engine)
    if writer is None:
        with engine.connect().execution_options(**{_WRITE: True}) as connection:
            yield connection
        return
    with writer.connection(engine) as connection:
        yield connection
