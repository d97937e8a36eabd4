"""Ledger benchmarks (issue: the tamper-evident ledger). Never run by the test suite.

    .venv/bin/pip install pymerkle==7.0.0     # the comparison library, not a project dependency
    .venv/bin/python bench/log.py [--appends 2000] [--appenders 1 4 8] [--sizes 1000 10000 100000 1000000]

Measures, on this machine, side by side in one run:
A. durable append throughput of our log against pymerkle's ``SqliteTree``: one appender, then several threads
   appending at once (as concurrent requests do), each append committed before it returns; in alternating rounds so
   that both see the same machine noise;
B. the cost of one durable append at several log sizes (the log is bulk-loaded to each size first);
C. the time to build an inclusion proof from the database at the largest size, and to verify one;
D. where an append's time goes: one durable insert sent to the driver in a write of ours (``ebl.store.db.write``: a
   savepoint of a group commit), inside a bare Core connection's transaction, and by the sqlite3 driver alone (the
   floor any SQLite log pays per commit).

Parts A–D use the blocking API (``write``), as the node's threads do; request handlers write through
``ebl.store.db.Database`` on the event loop, which commits the same way.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine

from ebl.keys import SigningKey
from ebl.log import merkle
from ebl.log.ledger import Ledger
from ebl.store.db import driver_connection, make_engine, migrate, read_session, write
from ebl.store.repositories import LogRepository


def _checksum(i: int) -> str:
    return merkle.leaf_hash(i.to_bytes(8, "big")).hex()


def _our_log(folder: Path, name: str) -> tuple[Engine, Ledger]:
    engine = make_engine(f"sqlite:///{folder / name}")
    migrate(engine)
    # A checkpoint every 100 leaves, as a node signs them by default.
    ledger = Ledger("bench.ebl.example/log", SigningKey(Ed25519PrivateKey.generate()), checkpoint_every=100)
    return engine, ledger


def _append_ours(engine: Engine, ledger: Ledger, positions: Iterator[int]) -> None:
    for i in positions:
        write(engine, lambda session, i=i: ledger.append(session, _checksum(i), datetime.now(UTC)))


def _append_pymerkle(tree: object, positions: Iterator[int]) -> None:
    for i in positions:
        tree.append_entry(bytes.fromhex(_checksum(i)))  # type: ignore[attr-defined]


def _run(appenders: int, append: Callable[[Iterator[int]], None], start: int, count: int) -> float:
    """Seconds for ``appenders`` threads to make ``count`` appends between them, each durable before it returns."""
    # Thread k appends positions start+k, start+k+appenders, …: together, each position once.
    threads = [
        threading.Thread(target=append, args=(iter(range(start + k, start + count, appenders)),))
        for k in range(appenders)
    ]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began


def throughput(folder: Path, appends: int, appenders: list[int], rounds: int = 4) -> None:
    from pymerkle import SqliteTree

    print("A. durable append throughput (each append committed before it returns)")
    for threads in appenders:
        engine, ledger = _our_log(folder, f"ours-{threads}.db")
        tree = SqliteTree(str(folder / f"pymerkle-{threads}.db"))
        per_round = appends // rounds
        ours, theirs = 0.0, 0.0
        for round_ in range(rounds):
            start = round_ * per_round
            ours += _run(threads, partial(_append_ours, engine, ledger), start, per_round)
            theirs += _run(threads, partial(_append_pymerkle, tree), start, per_round)
        done = per_round * rounds
        print(f"   {threads} appender{'s' if threads > 1 else ' '}")
        print(f"     ours      {done / ours:8.0f} appends/s   ({done} appends, {ours:.2f} s)")
        print(f"     pymerkle  {done / theirs:8.0f} appends/s   ({done} appends, {theirs:.2f} s)")
        print(f"     ratio     {theirs / ours:8.2f} ×")
        with read_session(engine) as session:
            log = LogRepository(session)
            assert log.size() == done == tree.get_size(), "the two logs disagree"
            # Concurrent appenders interleave differently in the two logs; one appender gives the same tree.
            assert threads > 1 or merkle.root(done, log.node) == tree.get_root(), "the two logs disagree"
        tree.close()


def _bulk_load(engine: Engine, size: int) -> None:
    """Fill the log to ``size`` leaves in one transaction (computing the same nodes appends would store)."""
    nodes: dict[tuple[int, int], bytes] = {}
    leaves = []
    for i in range(size):
        leaf = merkle.entry_leaf_hash(_checksum(i))
        leaves.append((i, _checksum(i), leaf, datetime.now(UTC)))
        for level, index, value in merkle.completed_nodes(i, leaf, lambda lv, ix: nodes[(lv, ix)]):
            nodes[(level, index)] = value
    with engine.begin() as connection:
        connection.exec_driver_sql(
            'INSERT INTO log_leaf ("index", entry_checksum, leaf_hash, created_at) VALUES (?, ?, ?, ?)', leaves
        )
        connection.exec_driver_sql(
            'INSERT INTO log_node (level, "index", hash) VALUES (?, ?, ?)',
            [(level, index, value) for (level, index), value in nodes.items()],
        )


def _time_each(function: Callable[[], object], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        function()
        samples.append(time.perf_counter() - began)
    return samples


def scaling(folder: Path, sizes: list[int], appends: int = 300) -> None:
    print("B. one durable append at each log size (median of", appends, "appends)")
    baseline = None
    largest: tuple[Engine, Ledger, int] | None = None
    for size in sizes:
        engine, ledger = _our_log(folder, f"size-{size}.db")
        began = time.perf_counter()
        _bulk_load(engine, size)
        loaded = time.perf_counter() - began
        position = iter(range(size, size + appends))

        def append_one(engine: Engine = engine, ledger: Ledger = ledger, position: object = position) -> None:
            checksum = _checksum(next(position))  # type: ignore[call-overload]
            write(engine, lambda session: ledger.append(session, checksum, datetime.now(UTC)))

        median = statistics.median(_time_each(append_one, appends))
        baseline = baseline or median
        ratio = median / baseline
        print(f"   {size:>9} leaves  {median * 1e6:8.0f} µs/append   ×{ratio:5.2f}   (bulk load {loaded:.0f} s)")
        largest = (engine, ledger, size + appends)
    assert largest is not None
    engine, ledger, size = largest
    print(f"C. inclusion proofs at {size} leaves (median of 500)")
    indices = [random.randrange(size) for _ in range(500)]
    with read_session(engine) as session:
        log = LogRepository(session)
        root = ledger.root(log, size)
        proofs = {}

        def prove(indices: list[int] = indices) -> None:
            index = indices[len(proofs) % len(indices)]
            proofs[index] = ledger.inclusion_proof(log, index, size)

        build = statistics.median(_time_each(prove, 500))
    checks = list(proofs.items())

    def verify(checks: list[tuple[int, list[bytes]]] = checks) -> None:
        index, proof = checks[random.randrange(len(checks))]
        merkle.verify_inclusion(merkle.entry_leaf_hash(_checksum(index)), index, size, proof, root)

    check = statistics.median(_time_each(verify, 500))
    print(f"   build from the database  {build * 1e3:7.3f} ms")
    print(f"   verify                   {check * 1e3:7.3f} ms")


def transaction_overhead(folder: Path, count: int = 1000) -> None:
    engine, _ = _our_log(folder, "overhead.db")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE probe (i INTEGER PRIMARY KEY, h BLOB)")
    counter = iter(range(3 * count))

    # The same insert each time, sent to the driver; what differs is the transaction around it.
    def through_session() -> None:
        write(
            engine,
            lambda session: driver_connection(session).execute(
                "INSERT INTO probe VALUES (?, ?)", (next(counter), bytes(32))
            ),
        )

    def through_connection() -> None:
        with engine.connect() as connection:
            connection.connection.driver_connection.execute(
                "INSERT INTO probe VALUES (?, ?)", (next(counter), bytes(32))
            )
            connection.commit()

    driver = sqlite3.connect(folder / "overhead.db", isolation_level=None)
    driver.execute("PRAGMA synchronous=FULL")

    def through_driver() -> None:
        driver.execute("BEGIN IMMEDIATE")
        driver.execute("INSERT INTO probe VALUES (?, ?)", (next(counter), bytes(32)))
        driver.execute("COMMIT")

    # Interleaved, so that all three see the same state of the WAL file (a growing WAL costs more per commit).
    samples: dict[str, list[float]] = {"session": [], "core": [], "bare": []}
    for _ in range(count):
        for name, function in (("session", through_session), ("core", through_connection), ("bare", through_driver)):
            samples[name] += _time_each(function, 1)
    session, core, bare = (statistics.median(samples[name]) for name in ("session", "core", "bare"))
    driver.close()
    print(f"D. one durable insert (median of {count})")
    print(f"   in a write of ours (write())        {session * 1e6:6.0f} µs")
    print(f"   in a Core connection's transaction  {core * 1e6:6.0f} µs")
    print(f"   through the sqlite3 driver alone    {bare * 1e6:6.0f} µs   (the floor: one WAL fsync per commit)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--appenders", type=int, nargs="+", default=[1, 4, 8], help="concurrent appenders (threads)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        print(f"python {os.sys.version.split()[0]}, {os.cpu_count()} cores, databases in {folder}")  # type: ignore[attr-defined]
        throughput(Path(folder), args.appends, args.appenders)
        scaling(Path(folder), args.sizes)
        transaction_overhead(Path(folder))


if __name__ == "__main__":
    main()
