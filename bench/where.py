"""Where an issuance's time goes, under load: py-spy samples a node while wrk issues eBLs (issue: production
storage). Never run by the test suite.

    apt-get install wrk && .venv/bin/pip install py-spy
    .venv/bin/python bench/where.py [--postgres ADMIN_URL] [--duration 15]

Starts a node (one process, SQLite unless ``--postgres``), drives issuance with bench/load.py's wrk script, and
records with ``py-spy --gil`` (only samples of the thread holding the interpreter lock: where Python spends CPU).
Each sample is given to the first category, walking from the innermost frame outwards, that claims one of its
frames; the table shows each category's share of the samples.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from load import CARRIER, SHIPPER, Server, _drop_postgres_database, _issue_body, _postgres_database, wrk

# (category, substrings of a frame "function (file:line)"), tried in this order on each frame, innermost first.
CATEGORIES = [
    ("signing (Ed25519 JWS)", ("ebl/jws.py", "joserfc/", "ed25519")),
    ("document validation", ("ebl/document.py", "jsonschema_rs")),
    # RFC 8785 checksums are mostly written by the json module's C encoder (ebl/canonical.py), so they count here.
    ("JSON: I-JSON parsing, RFC 8785, encoding", ("rfc8785/", "json/", "ebl/canonical.py", "encoders.py")),
    ("database (SQLAlchemy, driver, SQL)", ("sqlalchemy/", "sqlmodel/", "psycopg", "sqlite3", "ebl/store/")),
    ("pydantic models", ("pydantic",)),
    ("web framework (uvicorn, Starlette, FastAPI)", ("uvicorn/", "starlette/", "fastapi/", "h11/", "anyio/")),
    ("logs, metrics, rate limit", ("api/observability.py", "prometheus_client/", "logging/", "ebl/logs.py")),
    ("state machine and the rest of the service", ("ebl/",)),
]


def _category(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for name, markers in CATEGORIES:
            if any(marker in frame for marker in markers):
                return name
    return "other (asyncio, threads, interpreter)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server; default: SQLite")
    parser.add_argument("--duration", type=int, default=15)
    args = parser.parse_args()
    spy = Path(sys.executable).parent / "py-spy"
    if shutil.which("wrk") is None or not spy.exists():
        raise SystemExit("needs wrk (apt-get install wrk) and py-spy (.venv/bin/pip install py-spy)")
    folder = Path(tempfile.mkdtemp(prefix="ebl-bench-where-"))
    database_url, created = f"sqlite:///{folder / 'ebl.db'}", None
    if args.postgres:
        database_url, created = _postgres_database(args.postgres, suffix="where")
    server = Server(folder, database_url, workers=1)
    try:
        parties = {p["partyName"]: p for p in httpx.get(f"{server.url}/sandbox/parties").json()}
        env = {
            "EBL_BENCH_API_KEY": parties[CARRIER]["apiKey"],
            "EBL_BENCH_BODY": str(_issue_body(folder, parties[SHIPPER])),
            "EBL_BENCH_TAG": f"P{int(time.time()) % 100000:05d}",
        }
        results = []
        load = threading.Thread(
            target=lambda: results.append(
                wrk("issue", server.url, "issue.lua", env, duration=args.duration + 4, connections=32, threads=2)
            )
        )
        load.start()
        time.sleep(2)  # let the load reach its steady state before sampling (a warm-up, not synchronisation)
        samples = folder / "samples.txt"
        command = [str(spy), "record", "--gil", "-r", "200", "-d", str(args.duration), "-f", "raw", "-o", str(samples)]
        subprocess.run([*command, "-p", str(server.process.pid)], check=True, capture_output=True, timeout=300)
        load.join()
    finally:
        server.stop()
        if created:
            _drop_postgres_database(args.postgres, created)
    shares: Counter[str] = Counter()
    for line in samples.read_text(encoding="utf-8").splitlines():
        stack, count = line.rsplit(" ", 1)
        shares[_category(stack)] += int(count)
    total = sum(shares.values())
    print(f"{'PostgreSQL' if args.postgres else 'SQLite'}, 1 process, issuing at {results[0].rate:.0f} eBLs/s; ")
    print(f"{total} samples of the thread holding the GIL")
    for name, count in shares.most_common():
        print(f"   {name:46} {100 * count / total:5.1f} %")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
