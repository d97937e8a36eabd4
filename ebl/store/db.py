"""Engines, migrations, reads and writes, on SQLite (the embedded default) or PostgreSQL (psycopg 3).

SQLite runs in WAL mode with ``synchronous=FULL``, so a committed write survives a crash. A read is a function of a
session run in a session of its own; a write is a function of a session run in a write transaction. Writes that wait
at the same moment are committed together (group commit), in one transaction (:func:`_run_batch`). One commit, and
on SQLite one fsync, then serves many writes, and a write that fails rolls back without touching the others. A write's
caller gets its answer only once its transaction has committed: nothing is
acknowledged that a crash could lose.

Two ways in, for two kinds of caller. Code on an event loop (request handlers) uses :class:`Database`:
``await db.read(query)``, ``await db.write(job)``. Code on a thread of its own (start-up, the PINT courier, the
periodic checkpoint, command-line tools, benchmarks) uses :func:`read_session` and :func:`write`. Both commit through
the same batches, and their writers take the same turns.

One write transaction at a time writes to a node's database, whichever process or thread it comes from: on SQLite
that is the database's write lock (``BEGIN IMMEDIATE``), with an ``flock`` beside it to decide whose turn it is
(:class:`_SqliteTurn`); on PostgreSQL a transaction-scoped advisory lock taken at the start of every write
transaction. So the log's leaf indexes stay dense, and the row locks and unique keys the repositories use decide
every race between two writes of one batch or of two processes.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Generic, TypeVar, cast
from weakref import WeakKeyDictionary

from psycopg.pq import TransactionStatus
from sqlalchemy import event, inspect
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session, create_engine

from ebl.blocking import in_thread
from ebl.errors import SetupError

_WRITE = "ebl_write"
_CONNECTION = "ebl_connection"
_SCOPE = "ebl_scope"
_T = TypeVar("_T")
_P = TypeVar("_P")


class DatabaseSetupError(SetupError):
    """The database cannot be used as configured: an unsupported URL, a database that cannot be reached, a schema
    migrations cannot bring up, or another node's database (:meth:`ebl.service.Node.open`)."""


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
        # No pre-ping (a round trip for every read): a loop's read that finds its connection dead runs again
        # (_LoopReader.read).
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size)
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


LATEST_REVISION = "0004"
"""The latest migration in ebl/store/migrations/versions (tests/test_migrations.py holds it to Alembic's head)."""

# Alembic is imported only when a migration has to run: a node that starts on a database already at the latest
# revision never loads it, and each server process keeps the ~11 MB it would take.


def _alembic(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "ebl.store:migrations")
    config.attributes["connection"] = connection
    return config


def _connect(engine: Engine) -> Connection:
    try:
        return engine.connect()
    except OperationalError as exc:
        raise DatabaseSetupError(f"cannot connect to the database: {exc.orig}") from None


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``, the latest migration by default (Alembic), one process at a time."""
    with _connect(engine).execution_options(**{_WRITE: True}) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        tables = set(inspect(connection).get_table_names())
        if "chain_entry" in tables and "alembic_version" not in tables:
            raise DatabaseSetupError(
                "this database was created before the schema had migrations; it holds sandbox data only: "
                "move it away and start again"
            )
        if revision == "head" and "alembic_version" in tables and _current_revision(connection) == LATEST_REVISION:
            return
        from alembic import command

        command.upgrade(_alembic(connection), revision)


def _current_revision(connection: Connection) -> str | None:
    row = connection.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    return None if row is None else str(row[0])


def schema_revision(engine: Engine) -> tuple[str | None, str]:
    """The database's migration revision and the latest one this code knows."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with _connect(engine) as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        head = ScriptDirectory.from_config(_alembic(connection)).get_current_head()
    assert head is not None
    return current, head


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for reading.

    On PostgreSQL its statements run outside a transaction (autocommit). Under READ COMMITTED each statement sees a
    snapshot of its own either way, and a transaction cost every read a ``BEGIN`` and a ``ROLLBACK`` — and psycopg
    forgets its prepared statements at every ``ROLLBACK``, so each read's statements were parsed and planned anew.
    """
    with Session(engine, expire_on_commit=False) as session:
        if engine.dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


def write(engine: Engine, job: Callable[[Session], _T]) -> _T:
    """Run ``job`` in a write transaction and return what it returns once that transaction has committed.

    ``job`` may share the transaction with other writes of this process: if it raises, what it wrote is rolled back
    and its exception is raised here, and the other writes commit. It may run on the thread of another write, and
    other writes wait while it runs: it must not wait for anything but the database (no network, no second
    :func:`write`). It may run twice, when another write of its batch fails (:func:`_run_batch`): what it does
    besides returning a value must be done in the database, which rolls the first run back.
    """
    return _WRITERS[engine].submit(job)


def driver_connection(session: Session) -> Any:
    """The database driver's connection under ``session``'s transaction, for SQL sent to the driver directly.

    A write hands over its connection without starting the ORM's own bookkeeping, which a write that only sends plain
    SQL (an action's entry and log leaf, a checkpoint) then never pays for.
    """
    connection = session.info.get(_CONNECTION) or session.connection()
    return connection.connection.driver_connection


def discard_if_lost(session: Session) -> bool:
    """Whether the driver's connection under ``session`` is dead (the database restarted, or ended the connection);
    if it is, it is discarded, and so are the idle connections of the pool, which died with it in a restart.

    For SQL sent to the driver directly, which SQLAlchemy does not watch: for its own statements SQLAlchemy does the
    same, and raises a :class:`~sqlalchemy.exc.DBAPIError` with ``connection_invalidated`` set.
    """
    connection = session.info.get(_CONNECTION) or session.connection()
    if not getattr(connection.connection.driver_connection, "broken", False):
        return False
    connection.invalidate()
    connection.engine.pool.dispose()
    return True


def at_end(
    session: Session,
    key: object,
    start: Callable[[], _P],
    finish: Callable[[Session, _P], None],
    *,
    first: bool = False,
) -> _P:
    """Work that the writes of a batch share, done once after the last of them, in their transaction.

    Returns the value ``start`` made for ``key`` the first time a write of the batch asked for it, for the write to
    add its part; ``finish`` then gets it, with a session on the batch's transaction, after the batch's last write. If
    ``finish`` fails, the batch fails as a write of it would (:func:`_run_batch`); when the batch runs again, write by
    write, each write's part is finished at the end of that write. So the ledger appends the leaves of a whole batch
    in a few statements instead of a few per write.

    Work asked for ``first`` is done before the rest, in the order it was first asked for, and may ask for more of the
    rest: the eBL rows of a batch's issuances are stored first, then their chain entries, which need the rows' ids.
    """
    scope: _Scope = session.info[_SCOPE]
    work = scope.first if first else scope.rest
    found = work.get(key)
    if found is None:
        found = work[key] = (start(), finish)
    return cast(_P, found[0])


class _Scope:
    """The work left by the writes of a batch run together, or of one write run in a savepoint of its own, for
    :func:`at_end`."""

    __slots__ = ("first", "rest")

    def __init__(self) -> None:
        self.first: dict[object, tuple[Any, Callable[[Session, Any], None]]] = {}
        self.rest: dict[object, tuple[Any, Callable[[Session, Any], None]]] = {}

    def finish(self, connection: Connection) -> Exception | None:
        """Do the work, in a session on ``connection``'s transaction: the exception it raised, if it failed."""
        if not self.first and not self.rest:
            return None
        _, error = _run_in_session(connection, self, self._do)
        return error

    def _do(self, session: Session) -> None:
        for work in (self.first, self.rest):
            for value, finish in work.values():
                finish(session, value)


def _run_in_session(
    connection: Connection, scope: _Scope, run: Callable[[Session], Any]
) -> tuple[Any, Exception | None]:
    """One write of a batch, in a session on ``connection``'s transaction: its result, or the exception it raised.

    The ORM, if the write uses it, runs in a savepoint of its own, so that a failed flush rolls back only what the ORM
    sent.
    """
    with Session(bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint") as session:
        session.info[_CONNECTION] = connection
        session.info[_SCOPE] = scope
        try:
            result = run(session)
            session.flush()
            if session.in_transaction():
                session.commit()
        except Exception as error:
            if session.in_transaction():
                session.rollback()
            return None, error
    return result, None


def _run_in_savepoint(
    connection: Connection, driver: Any, run: Callable[[Session], Any]
) -> tuple[Any, Exception | None]:
    """One write of a batch and the work it leaves (:func:`at_end`), between ``SAVEPOINT`` and ``RELEASE``, or rolled
    back to the savepoint if it fails."""
    driver.execute("SAVEPOINT ebl_write")
    scope = _Scope()
    result, error = _run_in_session(connection, scope, run)
    if error is None:
        error = scope.finish(connection)
    if error is not None:
        driver.execute("ROLLBACK TO ebl_write")
        result = None
    driver.execute("RELEASE ebl_write")
    return result, error


def _run_batch(connection: Connection, runs: list[Callable[[Session], Any]]) -> list[tuple[Any, Exception | None]]:
    """``runs`` one after the other in ``connection``'s transaction, and the work they leave: their outcomes.

    They first run together, behind one savepoint for the batch, and the work they leave (:func:`at_end`) is done once
    after the last. Should any of it fail, the batch rolls back to that savepoint and runs again, each write between a
    savepoint and a ``RELEASE`` of its own, with its own work, so that only the failing ones roll back. Two statements
    per write, each a round trip to PostgreSQL, are paid only when a write fails.
    """
    driver: Any = connection.connection.driver_connection
    driver.execute("SAVEPOINT ebl_batch")
    scope = _Scope()
    outcomes: list[tuple[Any, Exception | None]] = []
    for run in runs:
        result, error = _run_in_session(connection, scope, run)
        if error is not None:
            break
        if not _in_transaction(connection, driver):
            raise RuntimeError("a write ended the transaction it shares with the other writes of its batch")
        outcomes.append((result, None))
    else:
        error = scope.finish(connection)
        if error is None:
            return outcomes
    driver.execute("ROLLBACK TO ebl_batch")
    if len(runs) == 1:
        return [(None, error)]
    return [_run_in_savepoint(connection, driver, run) for run in runs]


def _in_transaction(connection: Connection, driver: Any) -> bool:
    """Whether the driver's connection is still in a transaction, as the driver knows without asking the database."""
    if connection.dialect.name == "postgresql":
        return bool(driver.info.transaction_status != TransactionStatus.IDLE)
    return bool(driver.in_transaction)


def _commit_batch(
    connection: Connection, turn: _SqliteTurn | None, runs: list[Callable[[Session], Any]]
) -> list[tuple[Any, Exception | None]]:
    """Wait for the turn to write, run ``runs`` in one transaction, commit: all on this thread."""
    with _SqliteTurn.taken(turn), connection.begin():
        if connection.dialect.name == "postgresql":
            _wait_for_postgresql_turn(connection)
        return _run_batch(connection, runs)


def _wait_for_postgresql_turn(connection: Connection) -> None:
    """Take the advisory lock every write transaction of every process takes first; it ends with the transaction."""
    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_WRITE_TURN,))


class _SqliteTurn:
    """The turn to write to one SQLite database, among every writer of every process: an exclusive ``flock`` on a
    file beside the database, taken before ``BEGIN IMMEDIATE`` and given back after the commit.

    SQLite's own write lock is what keeps writers apart; this only decides whose turn it is, and wakes the next
    writer the moment the lock is free, where SQLite's busy handler would have it sleep and try again (for up to
    100 ms a time). It also lets a writer on an event loop wait for its turn on a thread, so that ``BEGIN IMMEDIATE``
    never blocks the loop. Each writer opens the file itself: ``flock`` excludes open files, not processes.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._file: int | None = None

    @classmethod
    def of(cls, engine: Engine) -> _SqliteTurn | None:
        database = engine.url.database
        if engine.dialect.name != "sqlite" or not database or database == ":memory:":
            return None
        return cls(f"{database}-writer")

    def _opened(self) -> int:
        if self._file is None:
            self._file = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._file

    def try_take(self) -> bool:
        try:
            fcntl.flock(self._opened(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def take(self) -> None:
        fcntl.flock(self._opened(), fcntl.LOCK_EX)

    def wait_until_free(self) -> None:
        """Block until no writer holds the turn, without taking it (a shared lock waits for the exclusive one)."""
        fcntl.flock(self._opened(), fcntl.LOCK_SH)
        fcntl.flock(self._opened(), fcntl.LOCK_UN)

    def give(self) -> None:
        fcntl.flock(self._opened(), fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the file (which gives the turn back, if this writer holds it); the next turn opens it again."""
        if self._file is not None:
            os.close(self._file)
            self._file = None

    @staticmethod
    @contextmanager
    def taken(turn: _SqliteTurn | None) -> Iterator[None]:
        if turn is None:
            yield
            return
        turn.take()
        try:
            yield
        finally:
            turn.give()


class _KeptConnection:
    """A connection kept open (a writer's, or a loop's for its reads), with these execution options; opened again
    once it has been invalidated or discarded."""

    def __init__(self, engine: Engine, **options: Any) -> None:
        self._engine = engine
        self._options = options
        self._connection: Connection | None = None

    def get(self) -> Connection:
        if self._connection is None or self._connection.invalidated:
            self.discard()
            self._connection = self._engine.connect().execution_options(**self._options)
        return self._connection

    def discard(self) -> None:
        # Closed for good, not handed back to the pool: after a failure it may be broken, and on close the pool may
        # already be disposed of.
        if self._connection is not None:
            self._connection.invalidate()
            self._connection.close()
            self._connection = None


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
    """Group commit for the threads of one process: writes that wait while another commits share the next commit.

    A thread that writes when no other is writing leads: it takes every write waiting (up to
    :data:`MAX_WRITES_PER_COMMIT`), runs them one after the other in one transaction (:func:`_run_batch`), commits,
    and tells each waiting thread its outcome. Writes that
    arrive meanwhile wait for the next commit, which the leader runs too, until its own write is done; then it hands
    the lead to the thread of the oldest write still waiting. The busier the node, the more writes share a commit,
    and a lone write runs on its own thread with no hand-over at all. The leader waits for its turn to write on its
    own thread: the :class:`_SqliteTurn` and ``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._turn = _SqliteTurn.of(engine)
        self._queue = threading.Lock()
        self._waiting: deque[_Job[Any]] = deque()
        self._leader: int | None = None
        self._connection_in_use = threading.Lock()
        self._connection = _KeptConnection(engine, **{_WRITE: True})

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
            self._connection.discard()
            if self._turn is not None:
                self._turn.close()

    def _commit(self, batch: list[_Job[Any]]) -> None:
        with self._connection_in_use:
            try:
                outcomes = _commit_batch(self._connection.get(), self._turn, [job.run for job in batch])
            except BaseException as failure:
                # Every write of the batch must hear of it, whatever it is. The transaction is gone, and perhaps the
                # connection with it: the next batch starts on a new connection.
                self._connection.discard()
                for job in batch:
                    job.finish(None, failure)
                return
        for job, (result, error) in zip(batch, outcomes, strict=True):
            job.finish(result, error)


class _LoopWriter:
    """Group commit for the coroutines of one event loop: the writes that wait while a batch commits make the next.

    The writes run on the loop itself, in one transaction; only waiting for the turn to write (held by a
    writer elsewhere) and for the commit (its fsync) happens on a thread. Keeping the work on the loop's thread
    matters: a thread that runs Python while the loop does too waits for the interpreter lock after every statement,
    up to the interpreter's switch interval (5 ms) each time, and the turn to write is held meanwhile. On SQLite that
    cost more than the work itself; on PostgreSQL a batch of eight transfers held the turn for ~30 ms, some eight
    times what its statements took in the database (docs/benchmarks-history.md). A PostgreSQL statement blocks the
    loop for its round trip, a fraction of a millisecond.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._postgresql = engine.dialect.name == "postgresql"
        self._turn = _SqliteTurn.of(engine)
        self._waiting: list[tuple[Callable[[Session], Any], asyncio.Future[Any]]] = []
        self._draining: asyncio.Task[None] | None = None
        self._connection = _KeptConnection(engine, **{_WRITE: True})

    async def submit(self, run: Callable[[Session], _T]) -> _T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._waiting.append((run, future))
        if self._draining is None:
            self._draining = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                await self._commit_next()
        finally:
            self._draining = None

    def _take(self) -> list[tuple[Callable[[Session], Any], asyncio.Future[Any]]]:
        batch = self._waiting[:MAX_WRITES_PER_COMMIT]
        del self._waiting[:MAX_WRITES_PER_COMMIT]
        return batch

    async def _commit_next(self) -> None:
        """Commit the writes waiting once this writer has the turn to write: those that come while it waits for the
        turn (another process holds it) join the batch."""
        batch: list[tuple[Callable[[Session], Any], asyncio.Future[Any]]] = []
        try:
            outcomes = await self._commit_on_loop(batch)
        except BaseException as failure:
            # Every write of the batch must hear of it; the next batch starts on a new connection.
            batch = batch or self._take()
            self._connection.discard()
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            if isinstance(failure, asyncio.CancelledError):
                raise
            return
        for (_, future), (result, error) in zip(batch, outcomes, strict=True):
            if future.done():  # its request was cancelled (the client went away): the write stands all the same
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    async def _commit_on_loop(
        self, batch: list[tuple[Callable[[Session], Any], asyncio.Future[Any]]]
    ) -> list[tuple[Any, Exception | None]]:
        """Take the turn, then the writes waiting into ``batch``, and run them on the loop; only the wait for the turn
        and the commit go to a thread."""
        if self._postgresql:
            connection = self._connection.get()
            # On failure _commit_next discards the connection, and its transaction and lock end with it.
            transaction = connection.begin()
            try:
                await in_thread(_wait_for_postgresql_turn, connection)
            except DBAPIError as lost:
                if not lost.connection_invalidated:
                    raise
                # The connection had died (the database restarted, or ended it) and nothing was written yet: the
                # batch starts again on a new one.
                self._connection.discard()
                connection = self._connection.get()
                transaction = connection.begin()
                await in_thread(_wait_for_postgresql_turn, connection)
            batch += self._take()
            outcomes = _run_batch(connection, [run for run, _ in batch])
            await in_thread(_commit_and_give, transaction, None)
            return outcomes
        turn = self._turn
        # Taken on the loop only when it is free at once: a turn taken on a thread would stay idle until the loop, busy
        # with other requests, came back to this batch, and another process's writer would wait for that.
        while turn is not None and not turn.try_take():
            await in_thread(turn.wait_until_free)
        batch += self._take()
        try:
            connection = self._connection.get()
            transaction = connection.begin()
            outcomes = _run_batch(connection, [run for run, _ in batch])
        except BaseException:
            if turn is not None:
                turn.give()
            raise
        # The turn goes back on the thread the moment the commit is done: the loop may take a while to come back to
        # this batch, and another process's writer need not wait for it.
        await in_thread(_commit_and_give, transaction, turn)
        return outcomes

    def close(self) -> None:
        self._connection.discard()
        if self._turn is not None:
            self._turn.close()


def _commit_and_give(transaction: Any, turn: _SqliteTurn | None) -> None:
    try:
        transaction.commit()
    finally:
        if turn is not None:
            turn.give()


class Database:
    """A node's database as its use cases see it from the event loop: ``await db.read(query)``,
    ``await db.write(job)``, each a function of a :class:`~sqlmodel.Session`.

    Reads and writes run on the loop, writes group-committed per loop (:class:`_LoopWriter`): a PostgreSQL statement
    blocks the loop for its round trip, which costs less than handing it to a thread. A thread that runs Python beside
    the loop takes the interpreter lock back after every statement, and waits for it up to the interpreter's switch
    interval, while the loop's own statements wait for it in turn (docs/benchmarks-history.md). So the database
    belongs near the node; a process serves as many reads and writes a second as its round trips allow.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._loops: WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[_LoopReader, _LoopWriter]] = WeakKeyDictionary()

    def _of_this_loop(self) -> tuple[_LoopReader, _LoopWriter]:
        loop = asyncio.get_running_loop()
        found = self._loops.get(loop)
        if found is None:
            found = self._loops[loop] = (_LoopReader(self.engine), _LoopWriter(self.engine))
        return found

    async def read(self, query: Callable[[Session], _T]) -> _T:
        reader, _ = self._of_this_loop()
        return reader.read(query)

    async def write(self, job: Callable[[Session], _T]) -> _T:
        _, writer = self._of_this_loop()
        return await writer.submit(job)

    def close(self) -> None:
        """Close the connections the loops read and write on (call it once no loop uses the database any more)."""
        for reader, writer in list(self._loops.values()):
            reader.close()
            writer.close()
        self._loops.clear()


class _LoopReader:
    """Reads for one event loop, on a connection it keeps open: its reads run one at a time, and taking a connection
    from the pool, setting it up and handing it back cost a read more than its statement (docs/benchmarks-history.md).

    Each read is a transaction of its own on SQLite, so that it sees every commit before it and holds no snapshot
    afterwards; on PostgreSQL the connection is in autocommit mode, as :func:`read_session` explains.
    """

    def __init__(self, engine: Engine) -> None:
        self._autocommit = engine.dialect.name == "postgresql"
        options = {"isolation_level": "AUTOCOMMIT"} if self._autocommit else {}
        self._connection = _KeptConnection(engine, **options)

    def read(self, query: Callable[[Session], _T]) -> _T:
        try:
            return self._run(query)
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
        # Its connection had died (the database restarted, or ended it); a read changes nothing, so it runs once
        # more, on a new connection. The connection is not tested before each read: a round trip each.
        return self._run(query)

    def _run(self, query: Callable[[Session], _T]) -> _T:
        connection = self._connection.get()
        # In autocommit mode a transaction would only be SQLAlchemy's bookkeeping.
        transaction = nullcontext() if self._autocommit else connection.begin()
        with transaction, Session(bind=connection, expire_on_commit=False) as session:
            session.info[_CONNECTION] = connection
            return query(session)

    def close(self) -> None:
        self._connection.discard()


_WRITERS: WeakKeyDictionary[Engine, _Writer] = WeakKeyDictionary()


def _add_writer(engine: Engine) -> None:
    writer = _WRITERS[engine] = _Writer(engine)
    # dispose() closes only the connections in the pool, not the one writes use.
    event.listen(engine, "engine_disposed", lambda _engine: writer.close())
