"""The corridor with two real nodes: CQSB and SGSB as separate ``ebl serve`` processes on loopback ports.

Each node has its own database (SQLite files, or PostgreSQL schemas with ``--database=postgresql``) and its own keys;
their trust stores recognise both node keys (``ebl.corridor.prepare_keys``). The nodes deliver envelopes on their
own; a test waits for a delivery by polling the state it expects, with a deadline.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine

from ebl import chain, corridor, jws, keys
from ebl.log import note
from ebl.verify import verify_bundle
from tests.conftest import (
    CARRIER,
    CONSIGNEE,
    CQ_BANK,
    DATABASES,
    SG_BANK,
    SG_CUSTOMS,
    SHIPPER,
    assert_error,
    load_sample,
)
from tests.nodeproc import NodeProcess


class Side:
    """One node of the corridor and its sandbox parties, over HTTP."""

    def __init__(self, process: NodeProcess) -> None:
        self.process = process
        self.client = httpx.Client(base_url=process.url, timeout=30)
        self.parties: dict[str, dict[str, Any]] = {}

    def load_parties(self) -> None:
        self.parties = {p["partyName"]: p for p in self.client.get("/sandbox/parties").json()}

    def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.parties[name]['apiKey']}"}

    def get(self, name: str, path: str) -> httpx.Response:
        return self.client.get(path, headers=self.headers(name))

    def act(self, name: str, reference: str, action: str, recipient: dict[str, Any] | None = None) -> httpx.Response:
        body: dict[str, Any] = {"actionCode": action}
        if recipient is not None:
            body["recipient"] = recipient
        return self.client.post(f"/v1/ebls/{reference}/transactions", json=body, headers=self.headers(name))

    def ref(self, name: str) -> dict[str, Any]:
        return {k: self.parties[name][k] for k in ("partyName", "eblPlatform", "identifyingCodes")}

    def node_key(self) -> keys.PublicKey:
        platform = self.process.env["EBL_PLATFORM"]
        return keys.load_or_create_node_key(self.process.folder / "keys" / f"node-{platform}.pem").public


def _until(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not done within {timeout:.0f} s"
        time.sleep(0.1)


def _holds(side: Side, party: str, reference: str, platform: str, status: str = "ISSUED") -> Callable[[], bool]:
    def check() -> bool:
        response = side.get(party, f"/v1/ebls/{reference}")
        return response.status_code == 200 and (response.json()["eblPlatform"], response.json()["status"]) == (
            platform,
            status,
        )

    return check


def _node(data_dir: Path, platform: str) -> NodeProcess:
    folder = corridor.node_dir(data_dir, platform)
    return NodeProcess(folder, DATABASES.url(folder), platform=platform)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[Side, Side]]:
    corridor.prepare_keys(tmp_path)
    cq, sg = _node(tmp_path, "CQSB"), _node(tmp_path, "SGSB")
    cq.env["EBL_PEERS"] = json.dumps({"SGSB": sg.url})
    sg.env["EBL_PEERS"] = json.dumps({"CQSB": cq.url})
    sides = Side(cq), Side(sg)
    yield sides
    for side in sides:
        side.client.close()
        side.process.stop()


def _started(nodes: tuple[Side, Side]) -> tuple[Side, Side]:
    """Both nodes running, each with its parties loaded."""
    for side in nodes:
        side.process.start()
    for side in nodes:
        side.load_parties()
    return nodes


def _sent(side: Side, columns: str) -> list[tuple[Any, ...]]:
    """``columns`` of every transfer a node has sent or is sending, in the order recorded (read from its database)."""
    engine = create_engine(side.process.env["EBL_DATABASE_URL"])
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(f"SELECT {columns} FROM outbound_transfer ORDER BY id").all()
    finally:
        engine.dispose()
    return [tuple(row) for row in rows]


def _first_envelope(side: Side) -> Any:
    """The first envelope a node sent, as it keeps it to resend."""
    return json.loads(_sent(side, "envelope")[0][0])


def _issue(cq: Side, reference: str) -> None:
    document = load_sample()
    document["transportDocumentReference"] = reference
    shipper = cq.ref(SHIPPER)
    issue_to = {"partyName": SHIPPER, "sendToPlatform": "CQSB", "identifyingCodes": shipper["identifyingCodes"]}
    body = {"transportDocument": document, "issueTo": issue_to}
    assert cq.client.post("/v1/ebls", json=body, headers=cq.headers(CARRIER)).status_code == 201


def test_issued_in_chongqing_delivered_in_singapore_verified_by_both_logs(nodes: tuple[Side, Side]) -> None:
    cq, sg = _started(nodes)
    # Each node seeds its own side only.
    assert {p["eblPlatform"] for p in cq.parties.values()} == {"CQSB"} and CONSIGNEE not in cq.parties
    assert {p["eblPlatform"] for p in sg.parties.values()} == {"SGSB"} and SHIPPER not in sg.parties
    reference = "YXRSCORRIDOR1"
    _issue(cq, reference)
    assert cq.act(SHIPPER, reference, "TRANSFER", cq.ref(CQ_BANK)).status_code == 201
    assert cq.act(CQ_BANK, reference, "ENDORSE_TO_ORDER", sg.ref(SG_BANK)).status_code == 201
    assert cq.act(CQ_BANK, reference, "TRANSFER", sg.ref(SG_BANK)).status_code == 201
    _until("the envelope reaches SGSB", _holds(sg, SG_BANK, reference, "SGSB"))

    # The sender keeps the receiver's signed answer as its receipt, and refuses every action from now on.
    _until("the receipt", lambda: cq.get(CQ_BANK, f"/v1/ebls/{reference}/transfers").json()[0]["status"] == "DELIVERED")
    receipt = cq.get(CQ_BANK, f"/v1/ebls/{reference}/transfers").json()[0]
    assert jws.verify(receipt["signedResponse"], sg.node_key())["responseCode"] == "RECE"
    refused = cq.act(CQ_BANK, reference, "TRANSFER", cq.ref(SHIPPER))
    assert refused.status_code == 409
    assert refused.json()["errors"][0]["errorCodeText"] == "ON_OTHER_PLATFORM"
    assert "SGSB" in refused.json()["errors"][0]["errorCodeMessage"]

    # SGSB's bundle holds only CQSB's entries: its own checkpoint proves none of them, but must still be SGSB's.
    arrived = sg.get(SG_CUSTOMS, f"/v1/ebls/{reference}/bundle").json()
    assert sg.client.post("/v1/verify", json=arrived).json()["verdict"] == "VALID"
    forged = sg.client.post("/v1/verify", json={**arrived, "checkpoint": "sgsb.ebl.example/log\n1\nAAAA\n"}).json()
    ledger = next(c for c in forged["checks"] if c["name"] == "LEDGER_INCLUSION")
    assert (forged["verdict"], ledger["status"]) == ("INVALID", "INVALID"), ledger
    assert "the bundle's checkpoint is not signed by a trusted SGSB node key" in ledger["detail"]

    assert sg.act(SG_BANK, reference, "ENDORSE", sg.ref(CONSIGNEE)).status_code == 201
    assert sg.act(SG_BANK, reference, "TRANSFER", sg.ref(CONSIGNEE)).status_code == 201
    # Surrender goes home: to the issuing carrier, on CQSB.
    assert sg.act(CONSIGNEE, reference, "SURRENDER_FOR_DELIVERY", cq.ref(CARRIER)).status_code == 201
    _until("the surrender reaches CQSB", _holds(cq, CARRIER, reference, "CQSB", "PENDING_SURRENDER_FOR_DELIVERY"))
    assert sg.act(CONSIGNEE, reference, "SIGN").status_code == 409  # the eBL left SGSB with the surrender
    accepted = cq.act(CARRIER, reference, "SACC")
    assert accepted.status_code == 201, accepted.text
    _until("SGSB learns of the SACC", _holds(sg, CONSIGNEE, reference, "CQSB", "SURRENDERED_FOR_DELIVERY"))
    cq_view = cq.get(CARRIER, f"/v1/ebls/{reference}").json()
    assert (cq_view["status"], cq_view["chainLength"]) == ("SURRENDERED_FOR_DELIVERY", 8)

    # Singapore Customs verifies the whole history, each node's part against that node's log, offline too.
    bundle = sg.get(SG_CUSTOMS, f"/v1/ebls/{reference}/bundle").json()
    (sg.process.folder / "bundle.json").write_text(json.dumps(bundle))
    trust = str(sg.process.folder / "keys" / "trust.json")
    offline = sg.process.run("verify", str(sg.process.folder / "bundle.json"), "--trust", trust, "--witnesses", "1")
    assert offline.returncode == 0, offline.stdout + offline.stderr
    report = json.loads(offline.stdout)
    ledger = next(c for c in report["checks"] if c["name"] == "LEDGER_INCLUSION")
    assert "cqsb.ebl.example/log" in ledger["detail"] and "sgsb.ebl.example/log" in ledger["detail"]
    assert [item["eblPlatform"] for item in report["history"]] == ["CQSB"] * 4 + ["SGSB"] * 3 + ["CQSB"]

    # A proof from the wrong node's log does not pass for the right one, in either direction.
    trust_store = keys.TrustStore.load(Path(trust))
    for entry, other in ((0, 4), (4, 0)):
        proofs = list(bundle["inclusionProofs"])
        proofs[entry] = proofs[other]
        swapped = verify_bundle({**bundle, "inclusionProofs": proofs}, trust_store)
        check = next(c for c in swapped.checks if c.name == "LEDGER_INCLUSION")
        assert (swapped.verdict, check.status, check.entry) == ("INVALID", "INVALID", entry), check

    # Replaying an envelope after the eBL moved on, to either node, changes nothing: the node accepted it once, so it
    # is a duplicate (its sender may have lost the answer, and must not take the transfer for refused).
    for sender, receiver in ((cq, sg), (sg, cq)):
        replayed = receiver.client.post("/v3/envelopes", json=_first_envelope(sender))
        assert replayed.status_code == 200, replayed.text
        answer = jws.verify(replayed.json(), receiver.node_key())
        assert answer["responseCode"] == "DUPE"
        accepted = _first_envelope(sender)["envelopeTransferChain"][-1]
        assert answer["duplicateOfAcceptedEnvelopeTransferChainEntrySignedContent"] == accepted
    assert sg.get(CONSIGNEE, f"/v1/ebls/{reference}").json()["status"] == "SURRENDERED_FOR_DELIVERY"

    # Each node witnesses the other's log.
    for side, witness in ((cq, sg), (sg, cq)):
        checkpoint = side.client.get("/v1/log/checkpoint").text
        raw = witness.node_key().ed25519()
        assert raw is not None and note.cosigners(
            checkpoint, {note.witness_name(witness.process.env["EBL_PLATFORM"]): [raw]}
        )
    for side in (cq, sg):
        audit = side.process.run("audit")
        assert audit.returncode == 0, audit.stdout + audit.stderr


class _Gateway:
    """A gateway in front of a node that passes every request on, except PINT envelopes while ``hold_envelopes`` is
    set (answered 502, which is no signed answer): the peer confirms parties, and deliveries fail."""

    def __init__(self, target: str) -> None:
        gateway = self
        self.hold_envelopes = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status, media_type, content = 502, "text/plain", b"no route"
                if not (gateway.hold_envelopes.is_set() and self.path.startswith("/v3/envelopes")):
                    headers = {"content-type": self.headers.get("content-type") or "application/json"}
                    try:
                        answer = httpx.request(self.command, target + self.path, content=body, headers=headers)
                        status, media_type, content = answer.status_code, answer.headers["content-type"], answer.content
                    except httpx.TransportError:
                        pass
                self.send_response(status)
                self.send_header("content-type", media_type)
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def test_a_node_that_is_down_gets_the_ebl_once_it_is_back(nodes: tuple[Side, Side]) -> None:
    cq, sg = nodes
    gateway = _Gateway(sg.process.url)
    try:
        cq.process.env["EBL_PEERS"] = json.dumps({"SGSB": gateway.url})
        _started(nodes)
        reference = "YXRSCORRIDOR2"
        _issue(cq, reference)
        gateway.hold_envelopes.set()
        # SGSB confirms its party, so the transfer is recorded; its delivery fails and is retried.
        assert cq.act(SHIPPER, reference, "TRANSFER", sg.ref(SG_BANK)).status_code == 201

        def attempts() -> dict[str, Any]:
            transfers: list[dict[str, Any]] = cq.get(SHIPPER, f"/v1/ebls/{reference}/transfers").json()
            return transfers[0]

        _until("two failed attempts", lambda: attempts()["attempts"] >= 2)
        pending = attempts()
        assert pending["status"] == "PENDING" and pending["lastError"]
        assert cq.act(SHIPPER, reference, "SIGN").status_code == 409  # in transit: nothing happens here any more

        # SGSB is down: no eBL goes to a party of it now, since a party it would refuse later leaves the eBL nowhere.
        sg.process.stop()
        other = "YXRSCORRIDOR2B"
        _issue(cq, other)
        unknown = {**sg.ref(SG_BANK), "identifyingCodes": [{"codeListProvider": "ZZZ", "partyCode": "NO-SUCH-UEN"}]}
        for action, recipient in (("TRANSFER", sg.ref(SG_BANK)), ("TRANSFER", unknown), ("ENDORSE_TO_ORDER", unknown)):
            assert_error(cq.act(SHIPPER, other, action, recipient), 503, "PEER_UNAVAILABLE")
        assert cq.act(SHIPPER, other, "SIGN").status_code == 201  # still held here, by the shipper

        gateway.hold_envelopes.clear()
        sg.process.start()
        _until("delivery after SGSB is back", _holds(sg, SG_BANK, reference, "SGSB"))
        _until("the receipt", lambda: attempts()["status"] == "DELIVERED")
        assert attempts()["responseCode"] == "RECE"
    finally:
        gateway.close()


def test_an_amended_reissue_reaches_a_platform_that_held_the_old_document(nodes: tuple[Side, Side]) -> None:
    gateway = _Gateway(nodes[1].process.url)
    try:
        nodes[0].process.env["EBL_PEERS"] = json.dumps({"SGSB": gateway.url})
        _amended_reissue(*_started(nodes), gateway)
    finally:
        gateway.close()


def _amended_reissue(cq: Side, sg: Side, gateway: _Gateway) -> None:
    reference = "YXRSCORRIDOR3"
    document = load_sample()
    document["transportDocumentReference"] = reference

    def issue(to: str, document: dict[str, Any]) -> httpx.Response:
        party = sg.ref(to)
        issue_to = {"partyName": to, "sendToPlatform": "SGSB", "identifyingCodes": party["identifyingCodes"]}
        body = {"transportDocument": document, "issueTo": issue_to}
        return cq.client.post("/v1/ebls", json=body, headers=cq.headers(CARRIER))

    _issue(cq, reference)
    assert cq.act(SHIPPER, reference, "TRANSFER", cq.ref(CQ_BANK)).status_code == 201
    assert cq.act(CQ_BANK, reference, "ENDORSE_TO_ORDER", sg.ref(SG_BANK)).status_code == 201
    assert cq.act(CQ_BANK, reference, "TRANSFER", sg.ref(SG_BANK)).status_code == 201
    _until("the eBL reaches SGSB", _holds(sg, SG_BANK, reference, "SGSB"))
    surrender = sg.client.post(
        f"/v1/ebls/{reference}/transactions",
        json={"actionCode": "SURRENDER_FOR_AMENDMENT", "recipient": cq.ref(CARRIER), "reasonCode": "SWI"},
        headers=sg.headers(SG_BANK),
    )
    assert surrender.status_code == 201, surrender.text
    _until("the surrender reaches CQSB", _holds(cq, CARRIER, reference, "CQSB", "PENDING_SURRENDER_FOR_AMENDMENT"))
    # SGSB takes no envelope for a while: the SACC, sent there as a hop, fails and backs off.
    gateway.hold_envelopes.set()
    assert cq.act(CARRIER, reference, "SACC").status_code == 201
    _until(
        "the SACC's third failed attempt",
        lambda: cq.get(CARRIER, f"/v1/ebls/{reference}/transfers").json()[-1]["attempts"] >= 3,
    )
    # The carrier re-issues the amended document, with a new sub-reference, to the party on SGSB that held the old one.
    amended = {**document, "transportDocumentSubReference": "AMD1", "termsAndConditions": "Amended."}
    assert issue(SG_BANK, amended).status_code == 201
    # Its delivery would be due before the SACC's, but the hops of one reference leave in the order recorded: the SACC
    # first, or SGSB would refuse it (DISE) once the re-issue had voided the old eBL there.
    gateway.hold_envelopes.clear()
    _until("the amended eBL reaches SGSB", _holds(sg, SG_BANK, reference, "SGSB"))
    _until("both answered", lambda: all(status != "PENDING" for status, _ in _sent(cq, "status, response_code")))
    assert _sent(cq, "status, response_code")[-2:] == [("DELIVERED", "RECE"), ("DELIVERED", "RECE")]
    held = sg.get(SG_BANK, f"/v1/ebls/{reference}").json()
    assert (held["transportDocumentSubReference"], held["chainLength"]) == ("AMD1", 1)
    transfers = cq.get(CARRIER, f"/v1/ebls/{reference}/transfers").json()
    assert transfers[-1]["status"] == "DELIVERED", transfers
    assert sg.act(SG_BANK, reference, "SIGN").status_code == 201  # it lives on SGSB now, and can be acted on
    # The amended eBL goes back to Chongqing. The first envelope of the old document, sent again to Singapore, is the
    # duplicate of one it accepted: neither a re-issue (its document is one SGSB held) nor a reason to store it again.
    assert sg.act(SG_BANK, reference, "TRANSFER", cq.ref(CQ_BANK)).status_code == 201
    _until("the amended eBL comes back to CQSB", _holds(cq, CQ_BANK, reference, "CQSB"))
    replayed = sg.client.post("/v3/envelopes", json=_first_envelope(cq))
    assert replayed.status_code == 200, replayed.text
    assert jws.verify(replayed.json(), sg.node_key())["responseCode"] == "DUPE"
    # Re-signed, it is no envelope SGSB accepted, and the old document is still no re-issue: a double spend.
    first = _first_envelope(cq)
    cq_key = keys.load_or_create_node_key(cq.process.folder / "keys" / "node-CQSB.pem")
    entry = jws.sign(jws.unverified_payload(first["envelopeTransferChain"][-1]), cq_key, typ="JWT")
    manifest = jws.unverified_payload(first["envelopeManifestSignedContent"])
    manifest["lastEnvelopeTransferChainEntrySignedContentChecksum"] = chain.entry_checksum(entry)
    resigned = {
        **first,
        "envelopeTransferChain": [*first["envelopeTransferChain"][:-1], entry],
        "envelopeManifestSignedContent": jws.sign(manifest, cq_key),
    }
    disputed = sg.client.post("/v3/envelopes", json=resigned)
    assert disputed.status_code == 409, disputed.text
    assert jws.verify(disputed.json(), sg.node_key())["responseCode"] == "DISE"
    seen = sg.get(SG_BANK, f"/v1/ebls/{reference}").json()
    assert (seen["transportDocumentSubReference"], seen["eblPlatform"]) == ("AMD1", "CQSB")
    for side in (cq, sg):
        audit = side.process.run("audit")
        assert audit.returncode == 0, audit.stdout + audit.stderr
