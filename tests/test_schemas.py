"""``schemas/`` is generated from the models: a change to a model without ``ebl schemas`` fails here."""

from __future__ import annotations

import json
from pathlib import Path

from ebl import schemas

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def test_checked_in_schemas_match_the_models() -> None:
    generated = schemas.generate()
    on_disk = {path.name for path in SCHEMAS.glob("*.schema.json")}
    assert on_disk == set(generated), "run `ebl schemas` to regenerate schemas/"
    for name, schema in generated.items():
        assert (SCHEMAS / name).read_text(encoding="utf-8") == schemas.render(schema), (
            f"schemas/{name} is stale: run `ebl schemas`"
        )


def test_the_transaction_request_schema_rejects_what_the_api_rejects() -> None:
    schema = json.loads((SCHEMAS / "transaction-request.schema.json").read_text(encoding="utf-8"))
    assert schema["additionalProperties"] is False
    assert "actionCode" in schema["required"]
