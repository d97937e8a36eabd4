"""The fictional parties of the Chongqing–Singapore corridor that a sandbox node seeds.

``CQSB`` and ``SGSB`` are this project's sandbox platform codes, not DCSA-registered ones. A lone node seeds all
seven parties under its own platform code; in the two-node corridor each node seeds its own side.

``ebl corridor`` runs the two nodes as two processes on one machine, each with its own database and keys.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ebl import keys
from ebl.parties import Role


@dataclass(frozen=True)
class SeedParty:
    side: str
    party_name: str
    role: Role
    code_list_name: str
    party_code: str

    def identifying_codes(self) -> list[dict[str, Any]]:
        return [{"codeListProvider": "ZZZ", "partyCode": self.party_code, "codeListName": self.code_list_name}]


CORRIDOR_PARTIES: tuple[SeedParty, ...] = (
    SeedParty("CQSB", "Chongqing Laptop Export Co., Ltd.", Role.HOLDER, "USCI", "91500000MA5U000001"),
    SeedParty("CQSB", "Yuxin Rail-Sea Forwarding Co., Ltd.", Role.CARRIER, "USCI", "91500000MA5U000002"),
    SeedParty("CQSB", "Bank of Chongqing Trade Finance", Role.HOLDER, "USCI", "91500000MA5U000003"),
    SeedParty("CQSB", "Chongqing Customs", Role.VERIFIER, "USCI", "11500000MB1234567X"),
    SeedParty("SGSB", "Lion City Electronics Pte. Ltd.", Role.HOLDER, "UEN", "201912345K"),
    SeedParty("SGSB", "Straits Trade Bank", Role.HOLDER, "UEN", "199901234D"),
    SeedParty("SGSB", "Singapore Customs", Role.VERIFIER, "UEN", "T08GA0001A"),
)

PLATFORMS = ("CQSB", "SGSB")


def node_dir(data_dir: Path, platform: str) -> Path:
    return data_dir / platform


def prepare_keys(data_dir: Path) -> None:
    """Both nodes' keys, each in its own folder, and a trust store in each that recognises both node keys: the
    corridor's mutual recognition. Existing keys are kept."""
    public = {
        platform: keys.load_or_create_node_key(node_dir(data_dir, platform) / "keys" / f"node-{platform}.pem").public
        for platform in PLATFORMS
    }
    for platform in PLATFORMS:
        path = node_dir(data_dir, platform) / "keys" / "trust.json"
        trust = keys.TrustStore.load(path) if path.exists() else keys.TrustStore({})
        for peer, key in public.items():
            trust = trust.with_node_key(peer, key)
        keys.write_public_file(path, json.dumps(trust.to_json(), indent=2) + "\n")


def run(data_dir: Path, base_port: int) -> int:
    """Serve both nodes as two processes until Ctrl-C or SIGTERM (or until one stops); then stop both."""
    stopping = threading.Event()
    # SIGTERM's default would end this process at once and leave both nodes running, with nobody to stop them.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    ports = {platform: base_port + i for i, platform in enumerate(PLATFORMS)}
    processes = []
    for platform in PLATFORMS:
        folder = node_dir(data_dir, platform).resolve()
        peers = [f"{p}=http://127.0.0.1:{port}" for p, port in ports.items() if p != platform]
        environment = {
            **os.environ,
            "EBL_KEYS_DIR": str(folder / "keys"),
            "EBL_DATABASE_URL": f"sqlite:///{folder / 'ebl.db'}",
            "EBL_SANDBOX": "true",
        }
        command = [sys.executable, "-m", "ebl.cli", "serve", "--platform", platform, "--port", str(ports[platform])]
        command += [arg for peer in peers for arg in ("--peer", peer)]
        processes.append(subprocess.Popen(command, env=environment))  # noqa: S603 — our own interpreter and CLI
    print(
        f"corridor: CQSB on http://127.0.0.1:{ports['CQSB']}, SGSB on http://127.0.0.1:{ports['SGSB']} "
        f"(data in {data_dir}); Ctrl-C stops both",
        flush=True,
    )
    try:
        # Every half second, to see whether a node has stopped on its own.
        while not stopping.wait(0.5) and all(process.poll() is None for process in processes):
            pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)
    failed = [process.returncode for process in processes if process.returncode not in (0, -signal.SIGTERM)]
    return failed[0] if failed else 0
