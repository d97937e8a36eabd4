"""A node at 1,000,000 eBLs on PostgreSQL against an empty one (issue: production storage). Never run by the tests.

    apt-get install wrk
    .venv/bin/python bench/scale.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres [--ebls 1000000]

Creates two databases on the server: one stays empty, the other is bulk-loaded with ``--ebls`` issued eBLs — the
corridor document under a reference of its own, its RFC 8785 checksum, an ISSUE entry and issuance manifest signed
by the carrier, its parties' involvement, and the log leaves and subtrees, written with COPY — then signed over by
a checkpoint, exactly as issuing them one by one would leave it. A node is started on each database
(``ebl serve --workers 2``, both running), and wrk measures, in ``--rounds`` alternating rounds (3 by default),
issuance throughput and ``GET /v1/ebls/{ref}`` latency (random references of the loaded eBLs; on the empty database,
the eBLs just issued); the table shows the medians, and each server's RSS read at the end.
Both databases (and the keys folder) are removed afterwards unless ``--keep``; a kept loaded database passes
``ebl audit`` with the kept keys.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import multiprocessing
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# bench/ is on the path when this script runs: the load generator's helpers are shared.
from load import (
    CARRIER,
    CQ_BANK,
    SAMPLE,
    SHIPPER,
    Listing,
    Result,
    Server,
    _drop_postgres_database,
    _issue_body,
    _postgres_database,
    wrk,
)
from sqlalchemy import make_url

from ebl import canonical, chain, jws, keys
from ebl.config import Settings
from ebl.log import merkle
from ebl.parties import PartyRef
from ebl.service import KeyRegistration, Node

_carrier_key: keys.SigningKey
_context: dict[str, Any]


def _init(private_pem: bytes, context: dict[str, Any]) -> None:
    global _carrier_key, _context  # one copy per worker process
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(private_pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    _carrier_key, _context = keys.SigningKey(key), context


def _issued(number: int) -> tuple[str, str, str, str]:
    """(reference, document JSON, document checksum, signed ISSUE entry) of eBL ``number``."""
    document = copy.deepcopy(_context["document"])
    reference = f"S{number:09d}"
    document["transportDocumentReference"] = reference
    checksum = canonical.checksum(document)
    manifest = chain.IssuanceManifest(documentChecksum=checksum, issueToChecksum=_context["issue_to_checksum"])
    payload = chain.EntryPayload(
        transportDocumentReference=reference,
        transportDocumentChecksum=checksum,
        sequence=0,
        transaction=chain.Transaction(
            actionCode=chain.ActionCode.ISSUE,
            actor=PartyRef.model_validate(_context["carrier"]),
            recipient=PartyRef.model_validate(_context["shipper"]),
            actionDateTime=_context["when"],
        ),
        eblPlatform="CQSB",
        issuanceManifestSignedContent=jws.sign(manifest.model_dump(exclude_none=True), _carrier_key),
    )
    return reference, json.dumps(document, ensure_ascii=False), checksum, chain.sign_entry(payload, _carrier_key)


def _ref(party: Any) -> dict[str, Any]:
    return {"partyName": party.partyName, "eblPlatform": party.eblPlatform, "identifyingCodes": party.identifyingCodes}


def bulk_load(database_url: str, folder: Path, count: int) -> list[str]:
    """Issue ``count`` eBLs into a fresh node's database in bulk; returns their references."""
    node = Node.open(Settings(database_url=database_url, keys_dir=folder / "keys", sandbox=True))
    parties = {p.partyName: p for p in asyncio.run(node.sandbox_parties())}
    carrier_key = keys.generate("Ed25519")
    carrier = parties[CARRIER]
    proof = jws.sign({"partyId": carrier.id, "eblPlatform": carrier.eblPlatform}, carrier_key)
    registration = KeyRegistration(publicJwk=carrier_key.public.to_json(), proof=proof)
    asyncio.run(node.register_key(node.authenticate(carrier.apiKey), registration))
    from cryptography.hazmat.primitives import serialization

    pem = carrier_key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    shipper = _ref(parties[SHIPPER])
    issue_to = {k: shipper[k] for k in ("partyName", "identifyingCodes")} | {"sendToPlatform": "CQSB"}
    context = {
        "document": json.loads(SAMPLE.read_text(encoding="utf-8")),
        "issue_to_checksum": canonical.checksum(issue_to),
        "carrier": _ref(parties[CARRIER]),
        "shipper": shipper,
        "when": chain.action_datetime(datetime.now(UTC)),
    }
    # The document names the shipper, the consignee bank and the carrier: they see it, as after an issuance.
    involved = sorted(p.id for p in parties.values() if p.partyName in (CARRIER, SHIPPER, CQ_BANK))
    now = datetime.now(UTC)
    issue_to_json = json.dumps(issue_to)
    references: list[str] = []
    nodes: dict[tuple[int, int], bytes] = {}
    connection_url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    began = time.monotonic()
    pool = multiprocessing.Pool(2, initializer=_init, initargs=(pem, context))
    with pool, psycopg.connect(connection_url) as db:
        for start in range(0, count, 10_000):
            batch = pool.map(_issued, range(start, min(count, start + 10_000)), chunksize=500)
            leaves = []
            with db.cursor() as cursor:
                with cursor.copy(
                    "COPY ebl (id, transport_document_reference, transport_document_sub_reference, document_json, "
                    "document_checksum, issue_to, status, chain_length, superseded, created_at) FROM STDIN"
                ) as copy_:
                    for offset, (reference, document, checksum, _entry) in enumerate(batch):
                        ebl_id = start + offset + 1
                        row = (ebl_id, reference, "", document, checksum, issue_to_json, "ISSUED", 1, False, now)
                        copy_.write_row(row)
                with cursor.copy(
                    "COPY chain_entry (id, ebl_id, sequence, jws, checksum, action_code, created_at) FROM STDIN"
                ) as copy_:
                    for offset, (_reference, _document, _checksum, entry) in enumerate(batch):
                        ebl_id = start + offset + 1
                        entry_checksum = chain.entry_checksum(entry)
                        copy_.write_row((ebl_id, ebl_id, 0, entry, entry_checksum, "ISSUE", now))
                        leaves.append(entry_checksum)
                with cursor.copy("COPY involvement (ebl_id, party_id) FROM STDIN") as copy_:
                    for offset in range(len(batch)):
                        for party_id in involved:
                            copy_.write_row((start + offset + 1, party_id))
                leaf_copy = 'COPY log_leaf ("index", entry_checksum, leaf_hash, created_at) FROM STDIN'
                with cursor.copy(leaf_copy) as copy_:
                    for offset, entry_checksum in enumerate(leaves):
                        index = start + offset
                        leaf = merkle.entry_leaf_hash(entry_checksum)
                        copy_.write_row((index, entry_checksum, leaf, now))
                        new = merkle.completed_nodes(index, leaf, lambda level, i: nodes[(level, i)])
                        for level, i, value in new:
                            nodes[(level, i)] = value
                with cursor.copy('COPY log_node (level, "index", hash) FROM STDIN') as copy_:
                    for level, i, value in _new_nodes(nodes, start, start + len(batch)):
                        copy_.write_row((level, i, value))
            db.commit()
            references += [reference for reference, *_ in batch]
            done = start + len(batch)
            print(f"   loaded {done:>9} eBLs   {done / (time.monotonic() - began):6.0f}/s", flush=True)
        with db.cursor() as cursor:
            cursor.execute("SELECT setval(pg_get_serial_sequence('ebl', 'id'), %s)", (count,))
            cursor.execute("SELECT setval(pg_get_serial_sequence('chain_entry', 'id'), %s)", (count,))
            cursor.execute("ANALYZE")
        db.commit()
    node.sign_checkpoint()
    node.close()
    return references


def _new_nodes(nodes: dict[tuple[int, int], bytes], first: int, end: int) -> Iterator[tuple[int, int, bytes]]:
    """The subtrees whose last leaf is in [first, end): the ones appending those leaves stored."""
    for (level, index), value in nodes.items():
        last = (index + 1) * (1 << level) - 1
        if first <= last < end:
            yield level, index, value


def _reads(server: Server, folder: Path, name: str, references: list[str], shipper: dict[str, Any]) -> Path:
    """A file of references to read: a sample of the loaded eBLs, or those the shipper was just issued."""
    sample = random.sample(references, min(len(references), 10_000)) if references else []
    if not sample:
        sample = Listing().held(server.url, shipper["apiKey"], "N", shipper["partyName"])
    refs = folder / f"{name}-refs.txt"
    refs.write_text("".join(f"{r}\n" for r in sample), encoding="utf-8")
    return refs


def measure(
    databases: dict[str, str], folder: Path, references: list[str], duration: int, rounds: int
) -> dict[str, dict[str, Any]]:
    """Issuance and reads on a node of each database (``--workers 2``), both running, in alternating rounds."""
    servers = {name: Server(folder / name, url, workers=2) for name, url in databases.items()}
    results: dict[str, dict[str, Any]] = {name: {"issue": [], "read": []} for name in databases}
    try:
        parties = {
            name: {p["partyName"]: p for p in httpx.get(f"{server.url}/sandbox/parties").json()}
            for name, server in servers.items()
        }
        load = {"duration": duration, "connections": 32, "threads": 2}
        stamp = int(time.time()) % 1000
        refs: dict[str, Path] = {}
        for number in range(rounds):
            for name, server in servers.items():
                issue_env = {
                    "EBL_BENCH_API_KEY": parties[name][CARRIER]["apiKey"],
                    "EBL_BENCH_BODY": str(_issue_body(folder / name, parties[name][SHIPPER])),
                    "EBL_BENCH_TAG": f"N{number}{stamp:03d}",
                }
                results[name]["issue"].append(wrk("issue", server.url, "issue.lua", issue_env, **load))
                if name not in refs:
                    loaded = references if name == "full" else []
                    refs[name] = _reads(server, folder / name, name, loaded, parties[name][SHIPPER])
            for name, server in servers.items():
                env = {"EBL_BENCH_API_KEY": parties[name][SHIPPER]["apiKey"], "EBL_BENCH_REFS": str(refs[name])}
                results[name]["read"].append(wrk("read", server.url, "read.lua", env, **load))
        for name, server in servers.items():
            results[name]["rss"] = server.rss_mb()
    finally:
        for server in servers.values():
            server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", required=True, help="admin URL of the PostgreSQL server")
    parser.add_argument("--ebls", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the table shows medians")
    parser.add_argument("--keep", action="store_true", help="keep the two databases")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ebl-bench-scale-"))
    empty_url, empty_name = _postgres_database(args.postgres, suffix="empty")
    full_url, full_name = _postgres_database(args.postgres, suffix="full")
    try:
        print(f"bulk-loading {args.ebls} eBLs into {full_name}")
        began = time.monotonic()
        references = bulk_load(full_url, folder / "full", args.ebls)
        print(f"   done in {time.monotonic() - began:.0f} s")
        results = measure({"empty": empty_url, "full": full_url}, folder, references, args.duration, args.rounds)
    finally:
        if not args.keep:
            _drop_postgres_database(args.postgres, empty_name)
            _drop_postgres_database(args.postgres, full_name)
            shutil.rmtree(folder, ignore_errors=True)

    def median(name: str, run: str, value: Callable[[Result], float]) -> float:
        return statistics.median(value(result) for result in results[name][run])

    rows = [
        ("issuance, eBLs/s", lambda name: median(name, "issue", lambda r: r.rate)),
        ("GET /v1/ebls/{ref} req/s", lambda name: median(name, "read", lambda r: r.rate)),
        ("GET /v1/ebls/{ref} p50 ms", lambda name: median(name, "read", lambda r: r.p50_us / 1000)),
        ("GET /v1/ebls/{ref} p99 ms", lambda name: median(name, "read", lambda r: r.p99_us / 1000)),
        ("server RSS, MB (all procs)", lambda name: float(results[name]["rss"])),
    ]
    print(f"PostgreSQL, ebl serve --workers 2, wrk -t2 -c32 -d{args.duration}s, medians of {args.rounds} rounds")
    print(f"   {'':26} {'empty':>10} {f'{args.ebls} eBLs':>14} {'full/empty':>11}")
    for label, value in rows:
        empty, full = value("empty"), value("full")
        print(f"   {label:26} {empty:10.1f} {full:14.1f} {full / empty:11.2f}")
    for name in ("empty", "full"):
        for run in ("issue", "read"):
            for result in results[name][run]:
                if not result.valid:
                    print(f"   INVALID: {run} on {name}: {result.non2xx} non-2xx, {result.socket_errors} socket errors")


if __name__ == "__main__":
    main()
