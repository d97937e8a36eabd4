"""Engines, migrations and transactions, on SQLite (the embedded default) or PostgreSQL (psycopg 3).

SQLite runs in WAL mode with ``synchronous=FULL``, so a committed write survives a crash. Reads run in sessions of
their own (:func:`read_session`). Every write runs through :func:`write`, which commits the writes that wait at the
same moment together (group commit, :class:`_Writer`): each in a savepoint of its own, all in one transaction. One
commit, and on SQLite one fsync, then serves many writes, and a write that fails rolls back to its savepoint without
touching the others. A write's caller gets its answer only once its transaction has committed: nothing is
acknowledged that a crash could lose.

Writers of several processes take turns: on SQLite the database's write lock (``BEGIN IMMEDIATE``), on PostgreSQL
a transaction-scoped advisory lock taken at the start of every write transaction. So one transaction at a time writes
to a node's database, the log's leaf indexes stay dense, and the row locks and unique keys the repositories use
decide every race between two writes of one batch or of two processes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar, cast
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
_T = TypeVar("_T")


class DatabaseSetupError(RuntimeError):
    """The database cannot be used as configured: an unsupported URL, or a schema migrations cannot bring up."""


SUPPORTED_BACKENDS = {"sqlite": "sqlite:///path/to/ebl.db", "postgresql": "postgresql+psycopg://user@host/database"}
# Any fixed numbers will do: they name the PostgreSQL locks that let one process at a time migrate the database, and
# one write transaction at a time write to it.
_MIGRATION_LOCK = 0x6562_6C00
_WRITE_TURN = 0x6562_6C01
# PostgreSQL keeps the ids of up to 64 subtransactions per transaction in shared memory; more slow every snapshot.
MAX_WRITES_PER_COMMIT = 32


def make_engine(url: str, *, pool_size: int = 20) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise DatabaseSetupError(
                f"PostgreSQL is reached through psycopg 3: write the URL as {SUPPORTED_BACKENDS[backend]}"
            )
        engine = create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)
        _add_writer(engine)
        return engine
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

    _add_writer(engine)
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


def write(engine: Engine, job: Callable[[Session], _T]) -> _T:
    """Run ``job`` in a write transaction and return what it returns once that transaction has committed.

    ``job`` may share the transaction with other writes of this process, in a savepoint of its own: if it raises,
    what it wrote is rolled back and its exception is raised here, and the other writes commit. It may run on the
    thread of another write, and other writes wait while it runs: it must not wait for anything but the database (no
    network, no second :func:`write`).
    """
    return _WRITERS[engine].submit(job)


def driver_connection(session: Session) -> Any:
    """The database driver's connection under ``session``'s transaction, for SQL sent to the driver directly.

    A write hands over its connection without starting the ORM's own bookkeeping, which a write that only sends plain
    SQL (an action's entry and log leaf, a checkpoint) then never pays for.
    """
    connection = session.info.get(_CONNECTION) or session.connection()
    return connection.connection.driver_connection


class _Job(Generic[_T]):
    """A write waiting for its turn: what it runs, and, once committed or failed, its outcome."""

    __slots__ = ("_woken", "done", "error", "result", "run", "thread")

    def __init__(self, run: Callable[[Session], _T]) -> None:
        self.run = run
        self.thread = threading.get_ident()
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        # Held from the start; released once, when the job is done or its thread is to lead: a plain lock is the
        # cheapest one-shot signal between threads.
        self._woken = threading.Lock()
        self._woken.acquire()

    def wait(self) -> None:
        self._woken.acquire()

    def wake(self) -> None:
        self._woken.release()

    def finish(self, result: Any, error: BaseException | None) -> None:
        self.result, self.error, self.done = result, error, True

    def outcome(self) -> _T:
        if self.error is not None:
            raise self.error
        return cast(_T, self.result)


class _Writer:
    """Group commit for one database in one process: writes that wait while another commits share the next commit.

    A thread that writes when no other is writing leads: it takes every write waiting (up to
    :data:`MAX_WRITES_PER_COMMIT`), runs them one after the other in one transaction, each between ``SAVEPOINT`` and
    ``RELEASE`` (or ``ROLLBACK TO`` when it raises), commits, and tells each waiting thread its outcome. Writes that
    arrive meanwhile wait for the next commit, which the leader runs too, until its own write is done; then it hands
    the lead to the thread of the oldest write still waiting. The busier the node, the more writes share a commit,
    and a lone write runs on its own thread with no hand-over at all. The leader's turn to write is the database's:
    ``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._postgresql = engine.dialect.name == "postgresql"
        self._queue = threading.Lock()
        self._waiting: deque[_Job[Any]] = deque()
        self._leader: int | None = None
        self._connection_in_use = threading.Lock()
        self._connection: Connection | None = None

    def submit(self, run: Callable[[Session], _T]) -> _T:
        job = _Job(run)
        with self._queue:
            if self._leader == job.thread:
                raise RuntimeError("a write cannot wait for another write: it would wait for itself")
            self._waiting.append(job)
            leads = self._leader is None
            if leads:
                self._leader = job.thread
        if not leads:
            job.wait()
            if job.done:
                return job.outcome()
            # Handed the lead: this thread's write is the oldest one waiting.
        self._lead_until_done(job)
        return job.outcome()

    def _lead_until_done(self, job: _Job[Any]) -> None:
        while not job.done:
            with self._queue:
                batch = [self._waiting.popleft() for _ in range(min(len(self._waiting), MAX_WRITES_PER_COMMIT))]
            self._commit(batch)
            for other in batch:
                if other is not job:
                    other.wake()
        with self._queue:
            successor = self._waiting[0] if self._waiting else None
            self._leader = None if successor is None else successor.thread
        if successor is not None:
            successor.wake()

    def close(self) -> None:
        """Close the connection writes use (the next write opens a new one)."""
        with self._connection_in_use:
            self._disconnect()

    def _commit(self, batch: list[_Job[Any]]) -> None:
        with self._connection_in_use:
            try:
                connection = self._connect()
                driver: Any = connection.connection.driver_connection
                with connection.begin():
                    if self._postgresql:
                        driver.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_TURN,))
                    outcomes = [self._run(connection, driver, job) for job in batch]
            except BaseException as failure:
                # Every write of the batch must hear of it, whatever it is. The transaction is gone, and perhaps the
                # connection with it: the next batch starts on a new connection.
                self._disconnect()
                for job in batch:
                    job.finish(None, failure)
                return
        for job, (result, error) in zip(batch, outcomes, strict=True):
            job.finish(result, error)

    @staticmethod
    def _run(connection: Connection, driver: Any, job: _Job[Any]) -> tuple[Any, Exception | None]:
        """One write in its savepoint. The ORM, if the write uses it, nests a savepoint of its own inside, so that
        a failed flush rolls back only what the ORM sent."""
        driver.execute("SAVEPOINT ebl_write")
        with Session(bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint") as session:
            session.info[_CONNECTION] = connection
            try:
                result = job.run(session)
                session.flush()
                if session.in_transaction():
                    session.commit()
            except Exception as error:
                if session.in_transaction():
                    session.rollback()
                driver.execute("ROLLBACK TO ebl_write")
                driver.execute("RELEASE ebl_write")
                return None, error
        driver.execute("RELEASE ebl_write")
        return result, None

    def _connect(self) -> Connection:
        if self._connection is None or self._connection.invalidated:
            self._connection = self._engine.connect().execution_options(**{_WRITE: True})
        return self._connection

    def _disconnect(self) -> None:
        # Closed for good, not handed back to the pool: after a failure it may be broken, and on close the pool may
        # already be disposed of.
        if self._connection is not None:
            self._connection.invalidate()
            self._connection.close()
            self._connection = None


_WRITERS: WeakKeyDictionary[Engine, _Writer] = WeakKeyDictionary()


def _add_writer(engine: Engine) -> None:
    writer = _WRITERS[engine] = _Writer(engine)
    # dispose() closes only the connections in the pool, not the one writes use.
    event.listen(engine, "engine_disposed", lambda _engine: writer.close())
