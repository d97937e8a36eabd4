"""Crash safety: a node killed with SIGKILL under load loses nothing it acknowledged, and its history stays whole.

The node runs as a real process; clients issue and transfer eBLs as fast as it answers and keep every 2xx answer
and every checkpoint they saw. The node is killed in the middle of that load, restarted on the same database, and
must then still hold every acknowledged action, pass ``ebl audit``, and show a log that extends every checkpoint
it signed before the crash.
"""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any

import httpx

from ebl.log import merkle, note
from tests.conftest import CARRIER, CQ_BANK, DATABASES, SHIPPER, load_sample
from tests.nodeproc import NodeProcess

CLIENTS = 4
ACKNOWLEDGED_BEFORE_KILL = 60


class _Load:
    """Clients that issue then transfer fresh eBLs until the node stops answering."""

    def __init__(self, url: str, keys: dict[str, str], parties: dict[str, Any]) -> None:
        self.url, self.keys, self.parties = url, keys, parties
        self.acknowledged: dict[str, int] = {}  # reference -> chain length the node confirmed
        self.checkpoints: list[str] = []
        self.enough = threading.Event()
        self.unexpected: list[str] = []
        self.cut_off = 0
        self._lock = threading.Lock()

    def _ack(self, reference: str, length: int) -> None:
        with self._lock:
            self.acknowledged[reference] = length
            if len(self.acknowledged) >= ACKNOWLEDGED_BEFORE_KILL:
                self.enough.set()

    def client(self, number: int) -> None:
        document = load_sample()
        carrier = {"Authorization": f"Bearer {self.keys[CARRIER]}"}
        shipper = {"Authorization": f"Bearer {self.keys[SHIPPER]}"}
        shipper_ref = self.parties[SHIPPER]
        bank = {k: self.parties[CQ_BANK][k] for k in ("partyName", "eblPlatform", "identifyingCodes")}
        issue_to = {
            "partyName": shipper_ref["partyName"],
            "sendToPlatform": shipper_ref["eblPlatform"],
            "identifyingCodes": shipper_ref["identifyingCodes"],
        }
        with httpx.Client(base_url=self.url, timeout=30) as http:
            for n in range(100_000):
                reference = f"CRASH{number}X{n:06d}"
                document["transportDocumentReference"] = reference
                try:
                    issued = http.post(
                        "/v1/ebls", json={"transportDocument": document, "issueTo": issue_to}, headers=carrier
                    )
                    if issued.status_code != 201:
                        self.unexpected.append(issued.text)
                        return
                    self._ack(reference, 1)
                    moved = http.post(
                        f"/v1/ebls/{reference}/transactions",
                        json={"actionCode": "TRANSFER", "recipient": bank},
                        headers=shipper,
                    )
                    if moved.status_code != 201:
                        self.unexpected.append(moved.text)
                        return
                    self._ack(reference, 2)
                    if n % 5 == 0:
                        checkpoint = http.get("/v1/log/checkpoint")
                        with self._lock:
                            self.checkpoints.append(checkpoint.text)
                except httpx.TransportError:
                    with self._lock:
                        self.cut_off += 1  # this client's request was in flight when the node died
                    return


def _b64(values: list[str]) -> list[bytes]:
    return [base64.b64decode(v) for v in values]


def test_a_node_killed_mid_write_keeps_every_acknowledged_action(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, DATABASES.url(tmp_path), checkpoint_every_entries="7")
    node.start()
    try:
        parties = {p["partyName"]: p for p in httpx.get(f"{node.url}/sandbox/parties").json()}
        load = _Load(node.url, {name: p["apiKey"] for name, p in parties.items()}, parties)
        clients = [threading.Thread(target=load.client, args=(i,)) for i in range(CLIENTS)]
        for client in clients:
            client.start()
        assert load.enough.wait(timeout=120), f"only {len(load.acknowledged)} actions answered in 120 s"
        node.kill()
        for client in clients:
            client.join(timeout=60)
        assert not load.unexpected, load.unexpected[:3]
        assert load.cut_off >= 1, "no request was in flight when the node was killed"
        assert load.checkpoints

        node.start()
        vkey = note.parse_vkey(httpx.get(f"{node.url}/v1/log/vkey").text.strip())
        headers = {"Authorization": f"Bearer {parties[SHIPPER]['apiKey']}"}
        with httpx.Client(base_url=node.url, timeout=30, headers=headers) as http:
            # 1. Every acknowledged action is there.
            for reference, length in load.acknowledged.items():
                ebl = http.get(f"/v1/ebls/{reference}")
                assert ebl.status_code == 200, (reference, ebl.text)
                assert ebl.json()["chainLength"] >= length, reference

            # 2. The log extends every checkpoint signed before the crash.
            text, _ = note.open_note(http.get("/v1/log/checkpoint").text, [vkey])
            now = note.Checkpoint.parse(text)
            for seen in load.checkpoints:
                before = note.Checkpoint.parse(note.open_note(seen, [vkey])[0])
                assert before.size <= now.size
                if 0 < before.size < now.size:
                    proof = http.get(f"/v1/log/proofs/consistency?first={before.size}&second={now.size}").json()
                    merkle.verify_consistency(before.size, now.size, before.root, now.root, _b64(proof["proof"]))
                elif before.size == now.size:
                    assert before.root == now.root
    finally:
        node.stop()

    # 3. The audit recomputes everything and agrees.
    audit = node.run("audit")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "OK" in audit.stdout
