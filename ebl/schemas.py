"""JSON Schemas of the request bodies, the chain-entry payload, the bundle and the report, for ``schemas/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ebl.bundle import Bundle, ChainHead
from ebl.chain import EntryPayload, IssuanceManifest
from ebl.service import DcsaIssuanceRequest, IssueRequest, KeyRegistration, TransactionRequest
from ebl.verify import VerificationReport

_MODELS: dict[str, type[BaseModel]] = {
    "issue-request": IssueRequest,
    "dcsa-issuance-request": DcsaIssuanceRequest,
    "transaction-request": TransactionRequest,
    "key-registration": KeyRegistration,
    "chain-entry-payload": EntryPayload,
    "issuance-manifest": IssuanceManifest,
    "chain-head": ChainHead,
    "bundle": Bundle,
    "verification-report": VerificationReport,
}


def generate() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema (draft 2020-12) for every published model."""
    result = {}
    for name, model in _MODELS.items():
        schema = model.model_json_schema()
        result[f"{name}.schema.json"] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://ebl.example/schemas/{name}.schema.json",
            **schema,
        }
    return result


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, schema in generate().items():
        path = folder / file_name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written
