"""Engine and sessions. SQLite runs in WAL mode with ``synchronous=FULL``: a committed write survives a crash."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, SQLModel, create_engine

from ebl.store.tables import APPEND_ONLY_TABLES  # importing the tables registers them on SQLModel.metadata

_WRITE = "ebl_write"


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

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
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def create_schema(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine)
    with engine.begin() as connection:
        for statement in _append_only_triggers(engine.dialect.name):
            connection.exec_driver_sql(statement)


def _append_only_triggers(dialect: str) -> list[str]:
    """Triggers that make the ledger tables refuse UPDATE and DELETE, whoever connects to the database."""
    if dialect != "sqlite":
        raise NotImplementedError(f"append-only triggers for {dialect} come with the production-storage work")
    return [
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: rows are never updated or deleted'); END"
        for table in APPEND_ONLY_TABLES
        for verb in ("UPDATE", "DELETE")
    ]


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        session.connection(execution_options={_WRITE: True})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
