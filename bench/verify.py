"""Offline verification of a 100-transaction chain against its raw signature verifications (issue: production
storage). Never run by the test suite.

    .venv/bin/python bench/verify.py [--transactions 100] [--rounds 200]

Builds a real chain on a node in a temporary folder (issue, transfer to the bank it is made out to, then the two
banks endorse it to each other's order and hand it over, back and forth), exports its bundle, and times, side by
side and alternating: ``verify_bundle`` (all seven checks) and, alone, the Ed25519 verifications of every signature
the bundle carries (entries, issuance manifest, key credentials, chain head, log checkpoint) with ``cryptography``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ebl import jws
from ebl.config import Settings
from ebl.demo import CARRIER, CQ_BANK, SG_BANK, SHIPPER, sample_document
from ebl.keys import PublicKey
from ebl.log import note
from ebl.service import IssueRequest, Node, TransactionRequest
from ebl.verify import verify_bundle


def _build(folder: Path, transactions: int) -> tuple[Node, dict[str, Any]]:
    node = Node.open(Settings(database_url=f"sqlite:///{folder / 'ebl.db'}", keys_dir=folder / "keys", sandbox=True))
    return node, asyncio.run(_chain(node, transactions))


async def _chain(node: Node, transactions: int) -> dict[str, Any]:
    """A chain of ``transactions`` on ``node``, exported as a bundle."""
    parties = {p.partyName: p for p in await node.sandbox_parties()}
    caller = {name: node.authenticate(p.apiKey) for name, p in parties.items()}

    def ref(name: str) -> dict[str, Any]:
        party = parties[name]
        return {
            "partyName": party.partyName,
            "eblPlatform": party.eblPlatform,
            "identifyingCodes": party.identifyingCodes,
        }

    document = sample_document()
    shipper = ref(SHIPPER)
    issue_to = {
        "partyName": shipper["partyName"],
        "sendToPlatform": "CQSB",
        "identifyingCodes": shipper["identifyingCodes"],
    }
    await node.issue(caller[CARRIER], IssueRequest.model_validate({"transportDocument": document, "issueTo": issue_to}))
    reference = document["transportDocumentReference"]
    steps = [(SHIPPER, "TRANSFER", CQ_BANK)]
    holder, other = CQ_BANK, SG_BANK
    while len(steps) < transactions - 1:
        steps += [(holder, "ENDORSE_TO_ORDER", other), (holder, "TRANSFER", other)]
        holder, other = other, holder
    for actor, action, recipient in steps[: transactions - 1]:
        request = TransactionRequest.model_validate({"actionCode": action, "recipient": ref(recipient)})
        await node.act(caller[actor], reference, request)
    return await node.bundle(caller[CARRIER], reference)


def _ed25519(jwk: dict[str, Any]) -> Ed25519PublicKey:
    key = PublicKey(jwk).ed25519()
    assert key is not None, "the corridor's keys are Ed25519"
    return key


def _raw_checks(node: Node, bundle: dict[str, Any]) -> list[tuple[Ed25519PublicKey, bytes, bytes]]:
    """(key, signature, signed bytes) for every signature in the bundle."""
    node_key = _ed25519(node.node_key.public.to_json())
    credentials = bundle["credentials"]
    party_keys = {}
    for credential in credentials:
        public = jws.unverified_payload(credential)["publicJwk"]
        party_keys[PublicKey(public).kid] = _ed25519(public)
    first = jws.unverified_payload(bundle["entries"][0])
    signed: list[tuple[Ed25519PublicKey, str]] = [(party_keys[jws.kid(e)], e) for e in bundle["entries"]]
    signed.append((party_keys[jws.kid(first["issuanceManifestSignedContent"])], first["issuanceManifestSignedContent"]))
    signed += [(node_key, c) for c in credentials] + [(node_key, bundle["head"])]
    checks = []
    for key, compact in signed:
        header, payload, signature = compact.split(".")
        checks.append(
            (key, base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)), f"{header}.{payload}".encode())
        )
    text, signatures = note.split_note(bundle["checkpoint"])
    checks += [(node_key, signature, text.encode()) for _name, _key_id, signature in signatures[:1]]
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        node, bundle = _build(Path(folder), args.transactions)
        trust = node.trust
        checks = _raw_checks(node, bundle)
        node.close()
    report = verify_bundle(bundle, trust)
    assert report.verdict == "VALID", report
    assert len(bundle["entries"]) == args.transactions
    full, raw = [], []
    for _ in range(args.rounds):
        began = time.perf_counter()
        verify_bundle(bundle, trust)
        full.append(time.perf_counter() - began)
        began = time.perf_counter()
        for key, signature, data in checks:
            key.verify(signature, data)
        raw.append(time.perf_counter() - began)
    full_ms, raw_ms = statistics.median(full) * 1e3, statistics.median(raw) * 1e3
    print(
        f"a {args.transactions}-transaction chain, {len(checks)} signatures; median of {args.rounds} alternating rounds"
    )
    print(f"   verify_bundle (all seven checks)     {full_ms:8.2f} ms")
    print(f"   its signature verifications alone    {raw_ms:8.2f} ms")
    print(f"   ratio                                {full_ms / raw_ms:8.2f} ×")


if __name__ == "__main__":
    main()
