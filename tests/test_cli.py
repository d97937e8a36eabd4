"""The ``ebl`` command: offline verification exit codes, schemas, the sandbox table, the demo over HTTP, and the
serve command's arguments."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ebl import cli
from ebl.service import Node
from tests.conftest import SG_CUSTOMS, Api
from tests.nodeproc import free_port

REF = "YXRS2611CKGSIN001"


def _story_bundle(api: Api, sample: dict[str, Any], tmp_path: Path) -> Path:
    from tests.test_api import play_story

    play_story(api, sample)
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(api.get(SG_CUSTOMS, f"/v1/ebls/{REF}/bundle").json()), encoding="utf-8")
    return path


def test_verify_exit_codes(
    api: Api, node: Node, sample: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _story_bundle(api, sample, tmp_path)
    valid = bundle.read_text(encoding="utf-8")
    trust = node.settings.keys_dir / "trust.json"
    assert cli.main(["verify", str(bundle), "--trust", str(trust)]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "VALID"

    tampered = json.loads(bundle.read_text(encoding="utf-8"))
    tampered["transportDocument"]["consignmentItems"][0]["cargoItems"][0]["cargoGrossWeight"]["value"] = 1.5
    bundle.write_text(json.dumps(tampered), encoding="utf-8")
    assert cli.main(["verify", str(bundle), "--trust", str(trust)]) == 1
    report = json.loads(capsys.readouterr().out)
    failed = {c["name"] for c in report["checks"] if c["status"] == "INVALID"}
    assert "DOCUMENT_INTEGRITY" in failed

    bundle.write_text("not json", encoding="utf-8")
    assert cli.main(["verify", str(bundle), "--trust", str(trust)]) == 2
    assert cli.main(["verify", str(tmp_path / "missing.json"), "--trust", str(trust)]) == 2
    # Read as strictly as POST /v1/verify reads it: a parser that kept the first of two keys would see a forged
    # document in a bundle whose verdict is VALID.
    forged = '{"transportDocument": {"transportDocumentReference": "FORGED"}, ' + valid[1:]
    bundle.write_text(forged, encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["verify", str(bundle), "--trust", str(trust)]) == 2
    assert "duplicate object key 'transportDocument'" in capsys.readouterr().err
    bundle.write_text('{"a":' * 100_000 + "1" + "}" * 100_000, encoding="utf-8")
    assert cli.main(["verify", str(bundle), "--trust", str(trust)]) == 2


def test_verify_reads_a_bundle_within_the_limits_of_post_verify(
    api: Api,
    node: Node,
    sample: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = _story_bundle(api, sample, tmp_path)
    trust = node.settings.keys_dir / "trust.json"
    size = bundle.stat().st_size
    # The limit in force is the node's: what the base64 of the largest document takes.
    monkeypatch.setenv("EBL_MAX_DOCUMENT_BYTES", str(3 * ((size - 3) // 4)))  # a limit of size - 1 to size - 4
    capsys.readouterr()
    assert cli.main(["verify", str(bundle), "--trust", str(trust)]) == 2
    assert "larger than the" in capsys.readouterr().err
    monkeypatch.setenv("EBL_MAX_DOCUMENT_BYTES", str(3 * ((size + 1) // 4)))  # size to size + 3
    assert cli.main(["verify", str(bundle), "--trust", str(trust)]) == 0
    monkeypatch.delenv("EBL_MAX_DOCUMENT_BYTES")

    with_nul = json.loads(bundle.read_text(encoding="utf-8"))
    with_nul["transportDocument"]["transportDocumentReference"] += "\u0000"
    bundle.write_text(json.dumps(with_nul), encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["verify", str(bundle), "--trust", str(trust)]) == 2
    assert "U+0000" in capsys.readouterr().err


def test_verify_with_a_trust_store_that_does_not_know_the_node(
    api: Api, sample: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _story_bundle(api, sample, tmp_path)
    stranger = tmp_path / "trust.json"
    stranger.write_text(json.dumps({"platforms": {}}), encoding="utf-8")
    assert cli.main(["verify", str(bundle), "--trust", str(stranger)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "INVALID"


def test_schemas_command_writes_every_schema(tmp_path: Path) -> None:
    assert cli.main(["schemas", "--out", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.iterdir()} >= {"issue-request.schema.json", "bundle.schema.json"}


def _environment_of(node: Node, monkeypatch: pytest.MonkeyPatch, *, sandbox: bool) -> None:
    """The environment an ``ebl`` command reads to open ``node``'s database and keys."""
    monkeypatch.setenv("EBL_DATABASE_URL", node.settings.database_url)
    monkeypatch.setenv("EBL_KEYS_DIR", str(node.settings.keys_dir))
    monkeypatch.setenv("EBL_SANDBOX", "true" if sandbox else "false")


def test_sandbox_prints_every_party_with_its_key(
    node: Node, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _environment_of(node, monkeypatch, sandbox=True)
    assert cli.main(["sandbox"]) == 0
    out = capsys.readouterr().out
    for party in asyncio.run(node.sandbox_parties()):
        assert party.partyName in out and party.apiKey in out


def test_sandbox_says_when_the_sandbox_is_off(
    node: Node, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _environment_of(node, monkeypatch, sandbox=False)
    assert cli.main(["sandbox"]) == 1
    assert capsys.readouterr().err == "ebl sandbox: the sandbox is off on this node; EBL_SANDBOX=true turns it on\n"


def test_a_node_refuses_the_database_of_another_node(
    node: Node, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # This CQSB node's database and keys, opened as SGSB: its tables are append-only, so nothing may be written.
    _environment_of(node, monkeypatch, sandbox=True)
    monkeypatch.setenv("EBL_PLATFORM", "SGSB")
    keys_before = sorted(path.name for path in node.settings.keys_dir.iterdir())
    assert cli.main(["sandbox"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ebl sandbox: this database holds the log of another node"), err
    assert "check EBL_PLATFORM" in err and err.count("\n") == 1
    assert sorted(path.name for path in node.settings.keys_dir.iterdir()) == keys_before
    monkeypatch.setenv("EBL_PLATFORM", "CQSB")
    monkeypatch.setenv("EBL_LOG_ORIGIN", "elsewhere.example/log")
    assert cli.main(["sandbox"]) == 1
    monkeypatch.delenv("EBL_LOG_ORIGIN")
    assert cli.main(["sandbox"]) == 0


def test_audit_says_when_the_database_is_not_a_nodes(
    node: Node, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _environment_of(node, monkeypatch, sandbox=True)
    monkeypatch.setenv("EBL_DATABASE_URL", f"sqlite:///{tmp_path / 'mistyped' / 'ebl.db'}")
    assert cli.main(["audit"]) == 2
    assert capsys.readouterr().err.startswith("ebl audit: EBL_DATABASE_URL names no node database at schema revision")


@pytest.mark.parametrize(
    ("arguments", "refusal"),
    [
        # Zero workers would leave a node that listens nowhere and never exits.
        (["serve", "--workers", "0"], "--workers takes a whole number of 1 or more, not '0'"),
        (["serve", "--workers", "-1"], "--workers takes a whole number of 1 or more, not '-1'"),
        (["serve", "--workers", "two"], "--workers takes a whole number of 1 or more, not 'two'"),
        (["serve", "--port", "70000"], "--port takes a whole number from 1 to 65535, not '70000'"),
        (["serve", "--port", "²"], "--port takes a whole number from 1 to 65535, not '²'"),
        (["corridor", "--base-port", "65535"], "--base-port takes a whole number from 1 to 65534, not '65535'"),
        (["verify", "b.json", "--witnesses", "-1"], "--witnesses takes a whole number from 0 to 16, not '-1'"),
    ],
)
def test_serve_and_corridor_refuse_numbers_they_cannot_serve_with(
    arguments: list[str], refusal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(arguments)
    assert exit_.value.code == 2
    assert refusal in capsys.readouterr().err


def test_the_demo_says_when_no_node_answers(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert cli.main(["demo", "--url", url]) == 1
    assert f"ebl demo: cannot reach the node at {url}/" in capsys.readouterr().err
    assert cli.main(["demo", "--corridor", "--url", url]) == 1
    assert "start it first (make corridor)" in capsys.readouterr().err


def test_schemas_says_when_it_cannot_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("")
    assert cli.main(["schemas", "--out", str(tmp_path / "a-file" / "schemas")]) == 1
    assert "ebl schemas: cannot write to" in capsys.readouterr().err
