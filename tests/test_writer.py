"""Group commit (``ebl.store.db.write``): writes that wait while another commits share the next transaction, each in
a savepoint of its own; a caller hears of its write only once it has committed; one failing write changes nothing
for the others. And reads (``ebl.store.db.read_session``, ``Database.read``). On whichever database the suite runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from ebl.store import db
from ebl.store.db import Database, driver_connection, make_engine, migrate, write
from ebl.store.repositories import LogRepository, PartyRepository
from ebl.store.tables import PartyRow
from tests.conftest import DATABASES


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(DATABASES.url(tmp_path))
    migrate(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE probe (name VARCHAR(40) PRIMARY KEY)")
    yield engine
    engine.dispose()


def _sql(session: Session, statement: str, *parameters: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.replace("?", "%s")
    return driver_connection(session).execute(statement, parameters)


def _insert(name: str) -> Callable[[Session], str]:
    def job(session: Session) -> str:
        _sql(session, "INSERT INTO probe (name) VALUES (?)", name)
        return name

    return job


def _names(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return {name for (name,) in connection.exec_driver_sql("SELECT name FROM probe")}


def _wait_until_waiting(engine: Engine, count: int) -> None:
    """Until ``count`` writes wait behind the one being run (the writer's queue is the only way to know)."""
    deadline = time.monotonic() + 30
    while len(db._WRITERS[engine]._waiting) < count:
        assert time.monotonic() < deadline, "the writes never queued up"
        time.sleep(0.001)


class Refused(Exception):
    pass


def test_a_failing_write_rolls_back_alone_while_the_writes_beside_it_commit(engine: Engine) -> None:
    running, release = threading.Event(), threading.Event()

    def held(session: Session) -> str:
        _sql(session, "INSERT INTO probe (name) VALUES (?)", "held")
        running.set()
        release.wait(30)  # keeps the lead while the other writes queue up behind it
        return "held"

    def failing(session: Session) -> None:
        _sql(session, "INSERT INTO probe (name) VALUES (?)", "failing")
        raise Refused("this write changes nothing")

    with ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(write, engine, held)
        assert running.wait(30)
        queued = [pool.submit(write, engine, job) for job in (_insert("before"), failing, _insert("after"))]
        _wait_until_waiting(engine, 3)
        release.set()
        assert first.result() == "held"
        assert queued[0].result() == "before"
        with pytest.raises(Refused):
            queued[1].result()
        assert queued[2].result() == "after"
    assert _names(engine) == {"held", "before", "after"}


def test_a_broken_constraint_fails_only_its_own_write(engine: Engine) -> None:
    write(engine, _insert("taken"))
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda name: _outcome(engine, name), ["taken", "new-1", "new-2"] * 5))
    assert sorted(outcomes) == ["IntegrityError"] * 13 + ["new-1", "new-2"]
    assert _names(engine) == {"taken", "new-1", "new-2"}


def _outcome(engine: Engine, name: str) -> str:
    try:
        return write(engine, _insert(name))
    except engine.dialect.loaded_dbapi.IntegrityError:  # the driver's: the probe's SQL goes straight to it
        return "IntegrityError"


def test_every_write_of_many_threads_is_committed_once(engine: Engine) -> None:
    names = [f"w{i:03d}" for i in range(200)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        assert list(pool.map(lambda name: write(engine, _insert(name)), names)) == names
    assert _names(engine) == set(names)


def test_a_write_cannot_wait_for_another_write(engine: Engine) -> None:
    with pytest.raises(RuntimeError, match="wait for itself"):
        write(engine, lambda session: write(engine, _insert("nested")))
    assert _names(engine) == set()


def test_orm_and_plain_sql_of_one_write_roll_back_together(engine: Engine) -> None:
    def mixed(session: Session) -> None:
        _sql(session, "INSERT INTO probe (name) VALUES (?)", "plain")
        session.add(
            PartyRow(
                id="p" * 32,
                party_name="Flushed, then rolled back",
                ebl_platform="CQSB",
                roles=["holder"],
                identifying_codes=[],
                api_key_hash="0" * 64,
                created_at=datetime.now(UTC),
            )
        )
        session.flush()
        raise Refused("after the flush")

    with pytest.raises(Refused):
        write(engine, mixed)
    assert _names(engine) == set()
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT COUNT(*) FROM party").scalar() == 0


def test_a_write_that_breaks_the_transaction_fails_its_batch_and_the_next_write_works(engine: Engine) -> None:
    def breaks(session: Session) -> None:
        _sql(session, "ROLLBACK")

    with pytest.raises(Exception):  # noqa: B017 - the driver's own error, whichever it is
        write(engine, breaks)
    assert write(engine, _insert("afterwards")) == "afterwards"
    assert _names(engine) == {"afterwards"}


class _Names:
    """Work writes leave to the end of their batch (``at_end``): names inserted together, in one statement."""

    def __init__(self) -> None:
        self.statements = 0

    def add(self, name: str, *, then_fail: bool = False) -> Callable[[Session], str]:
        def job(session: Session) -> str:
            db.at_end(session, self, list, self._insert).append(name)
            if then_fail:
                raise Refused("this write changes nothing")
            return name

        return job

    def _insert(self, session: Session, names: list[str]) -> None:
        self.statements += 1
        _sql(session, "INSERT INTO probe (name) VALUES " + ", ".join(["(?)"] * len(names)), *names)


def _batch(engine: Engine, jobs: list[Callable[[Session], Any]]) -> list[Any]:
    """``jobs`` written in one batch: queued behind a write that holds the lead until they all wait."""
    running, release = threading.Event(), threading.Event()

    def held(session: Session) -> None:
        running.set()
        release.wait(30)

    with ThreadPoolExecutor(max_workers=len(jobs) + 1) as pool:
        first = pool.submit(write, engine, held)
        assert running.wait(30)
        queued = [pool.submit(write, engine, job) for job in jobs]
        _wait_until_waiting(engine, len(jobs))
        release.set()
        first.result()
        return [future.exception() or future.result() for future in queued]


def test_the_work_writes_leave_is_done_once_at_the_end_of_their_batch(engine: Engine) -> None:
    names = _Names()
    assert _batch(engine, [names.add(f"n{i}") for i in range(5)]) == [f"n{i}" for i in range(5)]
    assert _names(engine) == {f"n{i}" for i in range(5)}
    assert names.statements == 1


def test_a_failing_write_leaves_no_work_and_the_others_work_is_done(engine: Engine) -> None:
    names = _Names()
    outcomes = _batch(engine, [names.add("a"), names.add("b", then_fail=True), names.add("c")])
    assert outcomes[0] == "a" and isinstance(outcomes[1], Refused) and outcomes[2] == "c"
    assert _names(engine) == {"a", "c"}


def test_work_that_fails_at_the_end_fails_only_the_write_it_came_from(engine: Engine) -> None:
    write(engine, _insert("taken"))
    names = _Names()
    outcomes = _batch(engine, [names.add("a"), names.add("taken"), names.add("c")])
    assert outcomes[0] == "a" and outcomes[2] == "c"
    assert isinstance(outcomes[1], engine.dialect.loaded_dbapi.IntegrityError)
    assert _names(engine) == {"taken", "a", "c"}


# -- from an event loop (Database): the way request handlers write -------------------------------------------------


def test_writes_from_an_event_loop_commit_and_a_failing_one_rolls_back_alone(engine: Engine) -> None:
    database = Database(engine)

    def failing(session: Session) -> None:
        _sql(session, "INSERT INTO probe (name) VALUES (?)", "failing")
        raise Refused("this write changes nothing")

    async def many() -> list[Any]:
        jobs = [_insert(f"loop-{i}") for i in range(10)]
        jobs.insert(5, failing)
        return await asyncio.gather(*(database.write(job) for job in jobs), return_exceptions=True)

    outcomes = asyncio.run(many())
    assert isinstance(outcomes.pop(5), Refused)
    assert outcomes == [f"loop-{i}" for i in range(10)]
    assert _names(engine) == {f"loop-{i}" for i in range(10)}
    assert asyncio.run(database.read(lambda session: _sql(session, "SELECT COUNT(*) FROM probe").fetchone()[0])) == 10
    database.close()


def test_event_loops_and_threads_write_in_turns(engine: Engine) -> None:
    """Writers of two event loops and of plain threads, each with a connection of its own, all commit."""
    database = Database(engine)

    def loop_writer(prefix: str) -> list[str]:
        async def writes() -> list[str]:
            return list(await asyncio.gather(*(database.write(_insert(f"{prefix}-{i}")) for i in range(30))))

        return asyncio.run(writes())

    with ThreadPoolExecutor(max_workers=6) as pool:
        loops = [pool.submit(loop_writer, name) for name in ("a", "b")]
        threads = [pool.submit(write, engine, _insert(f"t-{i}")) for i in range(30)]
        written = [name for future in loops for name in future.result()] + [future.result() for future in threads]
    assert _names(engine) == set(written)
    assert len(written) == 90
    database.close()


def test_postgresql_reads_keep_their_prepared_statements(engine: Engine) -> None:
    # A read in a transaction ended with ROLLBACK, and psycopg forgets its prepared statements at every ROLLBACK:
    # each read's statements were parsed and planned anew. Reads run in autocommit instead.
    if engine.dialect.name != "postgresql":
        pytest.skip("prepared statements of psycopg: PostgreSQL only")

    def prepared(session: Session) -> list[str]:
        return [statement for (statement,) in _sql(session, "SELECT statement FROM pg_prepared_statements")]

    for _ in range(6):  # psycopg prepares a statement the fifth time a connection runs it
        with db.read_session(engine) as session:
            _sql(session, "SELECT name FROM probe WHERE name = ?", "x").fetchall()
            on_a_thread = prepared(session)
    assert any("FROM probe WHERE name" in statement for statement in on_a_thread)

    database = Database(engine)

    async def on_the_loop() -> list[str]:
        for _ in range(6):
            await database.read(lambda session: LogRepository(session).size())
        return await database.read(prepared)

    assert any("FROM log_leaf" in statement for statement in asyncio.run(on_the_loop()))
    database.close()


def test_a_read_on_the_loop_sees_every_commit_before_it(engine: Engine) -> None:
    """A loop reads on a connection it keeps: on SQLite each read is a transaction of its own, so the connection holds
    no snapshot of the database from one read to the next."""
    database = Database(engine)

    def names(session: Session) -> set[str]:
        return {name for (name,) in _sql(session, "SELECT name FROM probe")}

    async def scenario() -> None:
        assert await database.read(names) == set()
        with engine.begin() as elsewhere:
            elsewhere.exec_driver_sql("INSERT INTO probe (name) VALUES ('elsewhere')")
        assert await database.read(names) == {"elsewhere"}
        assert await database.write(_insert("written")) == "written"
        assert await database.read(names) == {"elsewhere", "written"}

    asyncio.run(scenario())
    database.close()


def test_reads_and_writes_go_on_after_the_database_ends_every_connection(engine: Engine) -> None:
    """As after a restart of PostgreSQL: connections are not tested before each read (a round trip each), so the read
    that finds its connection dead (the loop's own, or one of the pool) runs once more on a new one, and the pool lets
    go of the others; the writer finds its connection dead before it writes anything, and starts its batch again on
    a new one."""
    if engine.dialect.name != "postgresql":
        pytest.skip("a database server that ends its connections: PostgreSQL only")
    database = Database(engine)

    def size_and_parties(session: Session) -> tuple[int, int]:
        # SQL sent to the driver directly, and the ORM's: SQLAlchemy watches only the latter for dead connections.
        return LogRepository(session).size(), len(PartyRepository(session).all())

    def backend(session: Session) -> int:
        return int(_sql(session, "SELECT pg_backend_pid()").fetchone()[0])

    async def scenario() -> None:  # one loop, so one writer and its connection throughout
        pids = [await database.write(backend), await database.read(backend)]
        with contextlib.ExitStack() as stack:  # three connections in the pool
            pids += [backend(stack.enter_context(db.read_session(engine))) for _ in range(3)]
        with engine.connect() as admin:  # a connection of the pool too: it ends the others
            admin.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid WHERE pid <> pg_backend_pid()",
                (pids,),
            )
        for _ in range(4):
            assert await database.read(size_and_parties) == (0, 0)
        assert await database.write(_insert("after")) == "after"

    asyncio.run(scenario())
    assert _names(engine) == {"after"}
    database.close()
