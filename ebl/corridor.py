"""The fictional parties of the Chongqing–Singapore corridor that a sandbox node seeds (DESIGN §3).

``CQSB`` and ``SGSB`` are this project's sandbox platform codes, not DCSA-registered ones. A lone node seeds all
seven parties under its own platform code; in the two-node corridor each node seeds its own side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
