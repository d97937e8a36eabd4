"""HTTP throughput of a node under 32 concurrent clients, driven by wrk (issue: production storage). Never run by
the test suite.

    apt-get install wrk
    .venv/bin/python bench/load.py                                   # SQLite in a temporary folder, 1 process
    .venv/bin/python bench/load.py --workers 2
    .venv/bin/python bench/load.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres --workers 2

One run starts a fresh node (``ebl serve``, durable commits, rate limit off) and measures, side by side, with the same
generator: ``GET /v1/parties`` (the trivial authenticated endpoint), issuance of distinct eBLs, transfers of those
eBLs (shipper to the bank they are made out to) and endorsements (the bank endorses each to the order of another);
``--rounds`` times over (3 by default), and then the medians, since this shared machine's speed drifts.
Every request of the issuance, transfer and endorsement runs has a reference of its own. A run with any non-2xx
answer or socket error is reported as invalid. With ``--postgres ADMIN_URL`` a database is created for the run
and dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, make_url

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "wrk"
SAMPLE = ROOT / "ebl" / "samples" / "corridor-bl.json"
CARRIER, SHIPPER = "Yuxin Rail-Sea Forwarding Co., Ltd.", "Chongqing Laptop Export Co., Ltd."
CQ_BANK, SG_BANK = "Bank of Chongqing Trade Finance", "Straits Trade Bank"


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    p50_us: int
    p99_us: int
    max_us: int
    non2xx: int
    socket_errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def valid(self) -> bool:
        return self.non2xx == 0 and self.socket_errors == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    def __init__(self, folder: Path, database_url: str, workers: int) -> None:
        self.url = f"http://127.0.0.1:{_free_port()}"
        env = {
            **os.environ,
            "EBL_DATABASE_URL": database_url,
            "EBL_KEYS_DIR": str(folder / "keys"),
            "EBL_SANDBOX": "true",
            "EBL_RATE_LIMIT_PER_SECOND": "0",
        }
        folder.mkdir(parents=True, exist_ok=True)
        self.log = (folder / "serve.log").open("wb")
        port = self.url.rsplit(":", 1)[1]
        command = [str(Path(sys.executable).parent / "ebl"), "serve", "--port", port, "--workers", str(workers)]
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the node did not start; see {folder / 'serve.log'}")
            time.sleep(0.2)

    def pids(self) -> list[int]:
        children = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False)
        return [self.process.pid, *map(int, children.stdout.split())]

    def rss_mb(self) -> float:
        total = 0
        for pid in self.pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total / 1024

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.log.close()


def wrk(
    name: str, url: str, script: str, env: dict[str, str], *, duration: int, connections: int, threads: int
) -> Result:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA / script),
        url,
    ]
    run_env = {**os.environ, "EBL_BENCH_LUA": str(LUA), "EBL_BENCH_THREADS": str(threads), **env}
    out = subprocess.run(command, env=run_env, capture_output=True, text=True, check=True, timeout=duration + 120)
    line = next(line for line in reversed(out.stdout.splitlines()) if line.startswith("{"))
    return Result(name, **json.loads(line))


def _issue_body(folder: Path, shipper: dict[str, Any]) -> Path:
    document = json.loads(SAMPLE.read_text(encoding="utf-8"))
    document["transportDocumentReference"] = "@@REF@@"
    issue_to = {k: shipper[k] for k in ("partyName", "identifyingCodes")} | {"sendToPlatform": shipper["eblPlatform"]}
    path = folder / "issue.json"
    path.write_text(json.dumps({"transportDocument": document, "issueTo": issue_to}), encoding="utf-8")
    return path


def _act_body(folder: Path, name: str, action: str, recipient: dict[str, Any]) -> Path:
    path = folder / f"{name}.json"
    ref = {k: recipient[k] for k in ("partyName", "eblPlatform", "identifyingCodes")}
    path.write_text(json.dumps({"actionCode": action, "recipient": ref}), encoding="utf-8")
    return path


class Listing:
    """Where to start listing a holder's eBLs: at the first page that held an eBL of this run (``GET /v1/ebls`` lists
    in the order of issuance, and every run's eBLs are issued after the previous run's), so that listing a run does
    not page through every eBL of the runs before it again."""

    def __init__(self) -> None:
        self.start: str | None = None

    def held(self, url: str, api_key: str, tag: str, possessor: str) -> list[str]:
        """The references of this run's eBLs (``tag``) that ``possessor`` holds now, in issuance order."""
        references: list[str] = []
        cursor, found = self.start, False
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=120) as client:
            while True:
                page = client.get("/v1/ebls", params={"limit": 100, **({"cursor": cursor} if cursor else {})}).json()
                tagged = [item for item in page["items"] if item["transportDocumentReference"].startswith(tag)]
                if tagged and not found:
                    self.start, found = cursor, True
                references += [
                    item["transportDocumentReference"] for item in tagged if item["possessor"]["partyName"] == possessor
                ]
                cursor = page.get("nextCursor")
                if not cursor:
                    return references


def _write(path: Path, references: list[str]) -> None:
    path.write_text("".join(f"{r}\n" for r in references), encoding="utf-8")


def _top_up(url: str, script: str, env: dict[str, str], measured: Result, load: dict[str, int], factor: int) -> None:
    """Run ``script`` unmeasured for (factor - 1) times as long as ``measured`` ran (at least one second)."""
    seconds = max(1, int(measured.seconds * (factor - 1)))
    wrk("top-up", url, script, env, **(load | {"duration": seconds}))


def _postgres_database(admin_url: str, suffix: str = "") -> tuple[str, str]:
    name = f"ebl_bench_{int(time.time())}{'_' + suffix if suffix else ''}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), name


def _drop_postgres_database(admin_url: str, name: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    engine.dispose()


def _round(
    server: Server, folder: Path, parties: dict[str, Any], prefix: str, load: dict[str, int], listing: Listing
) -> list[Result]:
    """One round: GET /v1/parties, issuance, transfers, endorsements; every eBL of the round carries ``prefix``."""
    key = {name: party["apiKey"] for name, party in parties.items()}
    issue_env = {
        "EBL_BENCH_API_KEY": key[CARRIER],
        "EBL_BENCH_BODY": str(_issue_body(folder, parties[SHIPPER])),
        "EBL_BENCH_TAG": prefix + "I",
    }
    transfer_env = {
        "EBL_BENCH_API_KEY": key[SHIPPER],
        "EBL_BENCH_BODY": str(_act_body(folder, "transfer", "TRANSFER", parties[CQ_BANK])),
        "EBL_BENCH_REFS": str(folder / "transfer.txt"),
    }
    endorse_env = {
        "EBL_BENCH_API_KEY": key[CQ_BANK],
        "EBL_BENCH_BODY": str(_act_body(folder, "endorse", "ENDORSE_TO_ORDER", parties[SG_BANK])),
        "EBL_BENCH_REFS": str(folder / "endorse.txt"),
    }
    get_env = {"EBL_BENCH_API_KEY": key[CARRIER], "EBL_BENCH_PATH": "/v1/parties"}
    results = [wrk("GET /v1/parties", server.url, "get.lua", get_env, **load)]
    results.append(wrk("issue (POST /v1/ebls)", server.url, "issue.lua", issue_env, **load))
    # Every transfer and endorsement needs an eBL of its own, and they may run faster than issuance: issue more
    # first (not measured), so that the measured runs never run out.
    _top_up(server.url, "issue.lua", issue_env | {"EBL_BENCH_TAG": prefix + "T"}, results[-1], load, factor=3)
    _write(folder / "transfer.txt", listing.held(server.url, key[SHIPPER], prefix, SHIPPER))
    results.append(wrk("transfer (shipper to bank)", server.url, "act.lua", transfer_env, **load))
    endorsable = listing.held(server.url, key[SHIPPER], prefix, CQ_BANK)
    if len(endorsable) < 2 * results[-1].requests:
        _write(folder / "transfer.txt", listing.held(server.url, key[SHIPPER], prefix, SHIPPER))
        _top_up(server.url, "act.lua", transfer_env, results[-1], load, factor=2)
        endorsable = listing.held(server.url, key[SHIPPER], prefix, CQ_BANK)
    _write(folder / "endorse.txt", endorsable)
    results.append(wrk("endorse (bank to order of bank)", server.url, "act.lua", endorse_env, **load))
    return results


def _print(results: list[Result]) -> None:
    baseline = results[0].rate
    print(f"   {'run':34} {'req/s':>8} {'× GET':>7} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}  valid")
    for result in results:
        print(
            f"   {result.name:34} {result.rate:8.0f} {result.rate / baseline:7.2f} {result.p50_us / 1000:8.1f} "
            f"{result.p99_us / 1000:8.1f} {result.non2xx + result.socket_errors:8d}  {'yes' if result.valid else 'NO'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server; default: SQLite in a temporary folder")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the four runs; the summary takes medians")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    if not 1 <= args.rounds <= 9:
        raise SystemExit("--rounds is 1 to 9")
    load = {"duration": args.duration, "connections": args.connections, "threads": args.threads}
    folder = Path(tempfile.mkdtemp(prefix="ebl-bench-http-"))
    database_url, created = f"sqlite:///{folder / 'ebl.db'}", None
    if args.postgres:
        database_url, created = _postgres_database(args.postgres)
    server = Server(folder, database_url, args.workers)
    rounds = []
    try:
        parties = {p["partyName"]: p for p in httpx.get(f"{server.url}/sandbox/parties").json()}
        stamp, listing = int(time.time()) % 1000, Listing()
        for number in range(args.rounds):
            rounds.append(_round(server, folder, parties, f"R{number}{stamp:03d}", load, listing))
        rss = server.rss_mb()
    finally:
        server.stop()
        if created:
            _drop_postgres_database(args.postgres, created)
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"{backend}, {args.workers} server process(es), wrk -t{args.threads} -c{args.connections} -d{args.duration}s")
    for number, results in enumerate(rounds, start=1):
        print(f"  round {number}")
        _print(results)
    print(f"  medians of {args.rounds} rounds (× GET: the median of each round's ratio)")
    print(f"   {'run':34} {'req/s':>8} {'× GET':>7} {'p99 ms':>8}  all valid")
    for index, name in enumerate(result.name for result in rounds[0]):
        runs = [results[index] for results in rounds]
        ratios = [results[index].rate / results[0].rate for results in rounds]
        print(
            f"   {name:34} {statistics.median(r.rate for r in runs):8.0f} {statistics.median(ratios):7.2f} "
            f"{statistics.median(r.p99_us for r in runs) / 1000:8.1f}  {'yes' if all(r.valid for r in runs) else 'NO'}"
        )
    print(f"   server RSS at the end: {rss:.0f} MB (all processes)")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
