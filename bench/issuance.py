"""Library-level issuance against OpenAttestation's ``wrapDocuments`` on the same corridor document, in one run
(issue: production storage). Never run by the test suite.

    (cd bench/tradetrust && npm install)       # @tradetrust-tt/tradetrust, pinned in package.json; Node 18+
    .venv/bin/python bench/issuance.py [--documents 2000] [--rounds 3]

Ours, per document: validate it (DCSA eBL 3.0.3 schema and rules), canonicalise it (RFC 8785) for its checksum,
and sign the carrier's DCSA issuance manifest (a compact JWS, Ed25519) — everything before storage. Theirs, per
document: ``wrapDocuments`` of an OA v2 document carrying the same DCSA document (see bench/tradetrust/wrap.js).
The two alternate for ``--rounds`` rounds; the figures are the totals.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import time
from pathlib import Path

from ebl import canonical, chain, jws, keys
from ebl.document import validate_transport_document

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "ebl" / "samples" / "corridor-bl.json"
WRAP = ROOT / "bench" / "tradetrust" / "wrap.js"


def ours(documents: list[dict[str, object]], issue_to: dict[str, object], key: keys.SigningKey) -> float:
    issue_to_checksum = canonical.checksum(issue_to)
    began = time.perf_counter()
    for document in documents:
        validate_transport_document(document)
        manifest = chain.IssuanceManifest(
            documentChecksum=canonical.checksum(document), issueToChecksum=issue_to_checksum
        )
        jws.sign(manifest.model_dump(exclude_none=True), key)
    return time.perf_counter() - began


def theirs(count: int) -> float:
    out = subprocess.run(
        ["node", str(WRAP), str(SAMPLE), str(count)], capture_output=True, text=True, check=True, timeout=600
    )
    seconds: float = json.loads(out.stdout)["seconds"]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not (WRAP.parent / "node_modules").exists():
        raise SystemExit("install the comparison first: (cd bench/tradetrust && npm install)")
    sample = json.loads(SAMPLE.read_text(encoding="utf-8"))
    documents = []
    for i in range(args.documents):
        document = copy.deepcopy(sample)
        document["transportDocumentReference"] = f"LIB{i:010d}"
        documents.append(document)
    issue_to = {"partyName": "Chongqing Laptop Export Co., Ltd.", "sendToPlatform": "CQSB", "identifyingCodes": []}
    key = keys.generate("Ed25519")
    ours(documents[:50], issue_to, key)  # warm up: the schema validator compiles once
    mine, other = 0.0, 0.0
    for _ in range(args.rounds):
        mine += ours(documents, issue_to, key)
        other += theirs(args.documents)
    done = args.documents * args.rounds
    print(f"library-level issuance of the corridor document, {done} documents each, {args.rounds} alternating rounds")
    print(f"   ours (validate, RFC 8785 checksum, sign)   {done / mine:8.0f} documents/s")
    print(f"   OpenAttestation wrapDocuments (Node)       {done / other:8.0f} documents/s")
    print(f"   ratio                                      {other / mine:8.2f} ×")


if __name__ == "__main__":
    main()
