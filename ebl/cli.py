"""The ``ebl`` command: serve a node, play the demo, verify a bundle offline, audit and migrate the database."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ebl.errors import BadRequest, EblError, NotFound, SetupError

EXIT_VALID, EXIT_INVALID, EXIT_UNUSABLE = 0, 1, 2


def _serve(args: argparse.Namespace) -> int:
    # Only what the server's supervisor needs: it stays small (ebl.server).
    from ebl import server
    from ebl.logs import log_config

    if args.platform:
        os.environ["EBL_PLATFORM"] = args.platform
    if args.peer:
        os.environ["EBL_PEERS"] = json.dumps(dict(args.peer))
    return server.serve(
        args.host,
        args.port,
        args.workers,
        log_config=log_config(),
        access_log=False,
        # httptools' C parser: ~10 % less CPU per request than h11's pure Python. asyncio's own loop, not uvloop,
        # which served more requests a second but lengthened the slowest (docs/benchmarks-history.md, step 12).
        http="httptools",
        loop="asyncio",
    )


def _whole_number(option: str, low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` (to ``high``), refused with a message that names ``option``."""
    bounds = f"of {low} or more" if high is None else f"from {low} to {high}"

    def parse(value: str) -> int:
        number = int(value) if value.isascii() and value.isdigit() else None
        if number is None or number < low or (high is not None and number > high):
            raise argparse.ArgumentTypeError(f"{option} takes a whole number {bounds}, not {value!r}")
        return number

    return parse


def _peer(value: str) -> tuple[str, str]:
    code, _, url = value.partition("=")
    if not code or not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"--peer takes CODE=URL, e.g. SGSB=http://127.0.0.1:8001, not {value!r}")
    return code, url.rstrip("/")


def _corridor(args: argparse.Namespace) -> int:
    from ebl import corridor

    data_dir = Path(args.data_dir)
    corridor.prepare_keys(data_dir)
    if args.keys_only:
        print(f"corridor keys in {data_dir}: each node's trust.json recognises both node keys")
        return 0
    return corridor.run(data_dir, args.base_port)


def _sandbox(_args: argparse.Namespace) -> int:
    import asyncio

    from ebl.config import Settings
    from ebl.service import Node

    node = Node.open(Settings())
    try:
        parties = asyncio.run(node.sandbox_parties())
    except NotFound as exc:
        print(f"ebl sandbox: {exc}; EBL_SANDBOX=true turns it on", file=sys.stderr)
        return 1
    finally:
        node.close()
    rows = [("party", "platform", "roles", "identifying code", "API key")]
    for party in parties:
        code = party.identifyingCodes[0]
        rows.append(
            (
                party.partyName,
                party.eblPlatform,
                ",".join(party.roles),
                f"{code.get('codeListName', '')} {code['partyCode']}",
                party.apiKey,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print("\nCQSB and SGSB are this project's sandbox platform codes, not DCSA-registered ones.")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ebl import canonical
    from ebl.config import Settings
    from ebl.keys import TrustStore
    from ebl.verify import verify_bundle

    try:
        trust = TrustStore.load(Path(args.trust))
        # As POST /v1/verify reads it: within its size limit, and strictly, for a duplicate key would let another
        # parser see another document.
        limit = Settings().max_large_body_bytes
        with Path(args.bundle).open("rb") as file:
            data = file.read(limit + 1)
        if len(data) > limit:
            raise BadRequest(f"the bundle is larger than the {limit} bytes a node verifies (EBL_MAX_DOCUMENT_BYTES)")
        bundle = canonical.loads(data)
        if canonical.holds_nul(data, bundle):
            raise BadRequest("a string of the bundle holds U+0000 (NUL), which no node takes")
        report = verify_bundle(bundle, trust, witnesses=args.witnesses)
    except (OSError, ValueError, EblError, SetupError) as exc:
        print(f"ebl verify: unusable input: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    print(json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False))
    return EXIT_VALID if report.verdict == "VALID" else EXIT_INVALID


def _audit(_args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ebl import keys
    from ebl.audit import audit
    from ebl.config import Settings
    from ebl.log.ledger import default_origin
    from ebl.store.db import make_engine, schema_revision

    settings = Settings()
    key_path = settings.keys_dir / f"node-{settings.platform}.pem"
    if not key_path.exists():
        print(f"ebl audit: no node key at {key_path}", file=sys.stderr)
        return EXIT_UNUSABLE
    node_key = keys.load_or_create_node_key(key_path).private
    assert isinstance(node_key, Ed25519PrivateKey), "load_or_create_node_key loads Ed25519 keys only"
    origin = settings.log_origin or default_origin(settings.platform)
    engine = make_engine(settings.database_url)
    trust_path = settings.keys_dir / "trust.json"
    trust = keys.TrustStore.load(trust_path) if trust_path.exists() else keys.TrustStore({})
    try:
        current, head = schema_revision(engine)
        if current != head:
            # A mistyped path is an empty database; one that is behind would fail on tables it lacks.
            print(
                f"ebl audit: EBL_DATABASE_URL names no node database at schema revision {head} (it is at "
                f"{current or 'none'}); check it, or run ebl db upgrade",
                file=sys.stderr,
            )
            return EXIT_UNUSABLE
        summary = audit(engine, node_key.public_key(), origin, platform=settings.platform, trust=trust)
    finally:
        engine.dispose()
    print(
        f"audited {summary.ebls} eBLs, {summary.entries} chain entries, {summary.leaves} log leaves, "
        f"{summary.nodes} tree nodes, {summary.checkpoints} checkpoints"
    )
    for failure in summary.failures:
        print(f"FAILED: {failure}")
    print("OK: every checksum, link, signature, the tree and the checkpoints match" if summary.ok else "AUDIT FAILED")
    return EXIT_VALID if summary.ok else EXIT_INVALID


def _db(args: argparse.Namespace) -> int:
    from ebl.config import Settings
    from ebl.store.db import make_engine, migrate, schema_revision

    try:
        engine = make_engine(Settings().database_url)
        try:
            if args.action == "upgrade":
                migrate(engine)
            current, head = schema_revision(engine)
        finally:
            engine.dispose()
    # Its exit status says whether the schema is current, so a database it cannot use is 2, not 1.
    except SetupError as exc:
        print(f"ebl db: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    print(f"schema revision {current or 'none'} (latest {head})")
    return 0 if current == head else EXIT_INVALID


def _schemas(args: argparse.Namespace) -> int:
    from ebl import schemas

    try:
        written = schemas.write(Path(args.out))
    except OSError as exc:
        print(f"ebl schemas: cannot write to {args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def _demo(args: argparse.Namespace) -> int:
    import httpx

    from ebl import demo

    try:
        if args.corridor:
            return demo.run_corridor(args.url, args.peer_url)
        return demo.run(args.url)
    except httpx.TransportError as exc:
        node = exc.request.url.copy_with(path="/", query=None)
        start = "make corridor" if args.corridor else "make run"
        print(f"ebl demo: cannot reach the node at {node} ({exc}); start it first ({start})", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ebl", description="eBL corridor node (DCSA eBL 3.0 on a signed ledger)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run a node (EBL_DATABASE_URL, EBL_KEYS_DIR pick database and keys)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_whole_number("--port", 1, 65535), default=8000)
    serve.add_argument("--platform", help="platform code of this node (default CQSB, or EBL_PLATFORM)")
    serve.add_argument(
        "--workers",
        type=_whole_number("--workers", 1),
        default=1,
        help="server processes sharing the port and the database (one per core)",
    )
    serve.add_argument(
        "--peer",
        action="append",
        type=_peer,
        metavar="CODE=URL",
        help="another platform's node (repeatable): eBLs move to it over DCSA PINT and it witnesses this log",
    )
    serve.set_defaults(handler=_serve)

    sandbox = commands.add_parser("sandbox", help="print the sandbox parties and their API keys")
    sandbox.set_defaults(handler=_sandbox)

    demo = commands.add_parser("demo", help="play the corridor story against a running node")
    demo.add_argument("--url", default="http://127.0.0.1:8000", help="the node (with --corridor: the CQSB node)")
    demo.add_argument("--corridor", action="store_true", help="play the story across the two nodes of `ebl corridor`")
    demo.add_argument("--peer-url", default="http://127.0.0.1:8001", help="with --corridor: the SGSB node")
    demo.set_defaults(handler=_demo)

    corridor = commands.add_parser(
        "corridor", help="run the Chongqing (CQSB) and Singapore (SGSB) nodes as two processes; Ctrl-C stops both"
    )
    corridor.add_argument(
        "--base-port",
        type=_whole_number("--base-port", 1, 65534),
        default=8000,
        help="CQSB listens here, SGSB on the next port",
    )
    corridor.add_argument("--data-dir", default="data/corridor", help="each node's database and keys, one folder each")
    corridor.add_argument(
        "--keys-only", action="store_true", help="create both nodes' keys and trust stores, then exit"
    )
    corridor.set_defaults(handler=_corridor)

    verify = commands.add_parser("verify", help="verify a bundle offline (exit 0 valid, 1 invalid, 2 unusable)")
    verify.add_argument("bundle")
    verify.add_argument("--trust", default="keys/trust.json", help="trust store (node keys per platform)")
    verify.add_argument(
        "--witnesses",
        type=_whole_number("--witnesses", 0, 16),
        default=0,
        help="cosignatures of other trusted nodes the log checkpoint must carry",
    )
    verify.set_defaults(handler=_verify)

    audit = commands.add_parser(
        "audit", help="recompute every checksum, link, signature and the log (exit 1 on a mismatch)"
    )
    audit.set_defaults(handler=_audit)

    database = commands.add_parser("db", help="the database schema (EBL_DATABASE_URL): Alembic migrations")
    database.add_argument(
        "action", choices=["upgrade", "current"], help="upgrade: apply every migration; current: show the revision"
    )
    database.set_defaults(handler=_db)

    schemas = commands.add_parser("schemas", help="write the JSON Schemas into schemas/")
    schemas.add_argument("--out", default="schemas")
    schemas.set_defaults(handler=_schemas)

    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
    except SetupError as exc:
        print(f"ebl {args.command}: {exc}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
