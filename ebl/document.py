"""Validation of a DCSA eBL 3.0.3 ``TransportDocument``: the schema, the business rules, ISO 6346.

Two layers, both reported together so that a carrier sees every problem at once:

1. **Schema** — ``components/schemas/TransportDocument`` of the DCSA OpenAPI file shipped in ``ebl/dcsa/``
   (types, required fields, lengths, enums, patterns such as the string rule ``^\\S(?:.*\\S)?$`` and UN/LOCODE
   ``^[A-Z]{2}[A-Z2-9]{3}$``). OpenAPI 3.0 schemas are JSON Schema draft 4 with extra keywords (``example``,
   ``discriminator``) that a draft 4 validator ignores; the spec defines no ``additionalProperties``, so unknown
   fields pass, and pseudo-enums such as ``eblPlatform`` or ``codeListProvider`` are plain strings there. The
   validator is jsonschema-rs (compiled, about 80 times faster here than the pure-Python jsonschema package), whose
   patterns follow ECMA-262 as OpenAPI specifies: ``$`` matches only at the end of the string.
2. **Business rules** — the static checks of the DCSA conformance tool (``EblChecks.STATIC_TD_CHECKS``, summarised in
   our DCSA notes §2 and §7), ISO 6346 check digits on container numbers, and ``transportDocumentStatus`` ``ISSUED``
   for a document being issued.

Every problem becomes an :class:`~ebl.errors.ErrorDetail` with a ``jsonPath``; ``code`` is ``SCHEMA`` for the schema
layer and the rule's name otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs
import yaml

from ebl.errors import ErrorDetail, InvalidDocument

_SPEC = "EBL_v3.0.3.yaml"
_CONTAINER_NUMBER = re.compile(r"^[A-Z]{3}[UJZ][0-9]{7}$")
_LOOKS_LIKE_CONTAINER = re.compile(r"^[A-Z]{4}[0-9]{7}$")
# ISO 6346: letters take the values 10..38, skipping multiples of 11.
_LETTER_VALUES = dict(zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", [v for v in range(10, 39) if v % 11 != 0], strict=True))
_DOCUMENT_PARTY_SINGLES = (
    "shipper",
    "consignee",
    "endorsee",
    "issuingParty",
    "carriersAgentAtDestination",
    "onBehalfOfShipper",
    "onBehalfOfConsignee",
)


@cache
def _spec() -> dict[str, Any]:
    text = resources.files("ebl").joinpath("dcsa", _SPEC).read_text(encoding="utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec: dict[str, Any] = yaml.load(text, Loader=loader)  # noqa: S506  (a safe loader)
    return spec


@cache
def _validator() -> jsonschema_rs.Draft4Validator:
    # jsonschema-rs evaluates patterns with ECMA-262 semantics, as the spec means them: "$" ends the input. Its own
    # "date" and "date-time" checks are RFC 3339's full-date and date-time (impossible dates refused).
    root = {"components": _spec()["components"], "$ref": "#/components/schemas/TransportDocument"}
    return jsonschema_rs.Draft4Validator(root, validate_formats=True)


def _path(parts: Iterator[Any] | Any) -> str:
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)


def _schema_problems(document: Any) -> list[ErrorDetail]:
    validator = _validator()
    if validator.is_valid(document):
        return []
    problems = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.instance_path))):
        path = list(error.instance_path)
        if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.Required):
            path.append(error.kind.property)
        prop = next((str(p) for p in reversed(path) if isinstance(p, str)), None)
        message = error.message
        if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.Pattern):
            message = f"{error.instance!r} does not match the DCSA pattern {error.kind.pattern}"
        message = message if len(message) <= 300 else message[:297] + "..."
        problems.append(ErrorDetail(message=message, code="SCHEMA", property=prop, json_path=_path(path)))
    return problems


# -- ISO 6346 -------------------------------------------------------------------------------------------------


def iso6346_check_digit(owner_and_serial: str) -> int:
    """The check digit of the first ten characters of a container number (owner code, category, serial)."""
    if not re.fullmatch(r"[A-Z]{4}[0-9]{6}", owner_and_serial):
        raise ValueError("ISO 6346 needs four capital letters and six digits")
    total: int = sum(
        (_LETTER_VALUES[char] if char.isalpha() else int(char)) * 2**position
        for position, char in enumerate(owner_and_serial)
    )
    return total % 11 % 10


# -- business rules ---------------------------------------------------------------------------------------------


def _problem(code: str, message: str, path: str) -> ErrorDetail:
    return ErrorDetail(message=message, code=code, property=path.rsplit(".", 1)[-1].split("[")[0], json_path=path)


def _objects(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


_SUB_RESOURCES = ("/chain", "/bundle", "/transfers")
"""The paths under ``/v1/ebls/{reference}`` that ``GET`` reads."""


def _rule_problems(document: dict[str, Any]) -> list[ErrorDetail]:
    problems: list[ErrorDetail] = []
    type_code = document.get("transportDocumentTypeCode")
    is_to_order = document.get("isToOrder")
    raw_parties = document.get("documentParties")
    parties = raw_parties if isinstance(raw_parties, dict) else {}

    reference = document.get("transportDocumentReference")
    if isinstance(reference, str) and reference.endswith(_SUB_RESOURCES):
        # Not DCSA's rule but this platform's: "/" is sent as %2F and decoded before routing, so GET /v1/ebls/A%2Fchain
        # would read the chain of the eBL "A", never the eBL "A/chain".
        problems.append(
            _problem(
                "REFERENCE_NOT_ADDRESSABLE",
                f"a reference ending with {next(s for s in _SUB_RESOURCES if reference.endswith(s))} names another "
                "resource of the eBL without it in this API's URLs",
                "$.transportDocumentReference",
            )
        )
    if document.get("transportDocumentStatus") != "ISSUED":
        problems.append(
            _problem(
                "DOCUMENT_STATUS",
                "a document is issued with transportDocumentStatus ISSUED",
                "$.transportDocumentStatus",
            )
        )
    if is_to_order is True and type_code != "BOL":
        problems.append(_problem("TO_ORDER_REQUIRES_BOL", "isToOrder is allowed only for a BOL", "$.isToOrder"))

    originals = [document.get(f"numberOfOriginals{kind}Charges") for kind in ("With", "Without")]
    counts = [n for n in originals if isinstance(n, int) and not isinstance(n, bool)]
    if type_code == "SWB" and any(n != 0 for n in counts):
        problems.append(_problem("ORIGINALS", "a sea waybill has no originals", "$.numberOfOriginalsWithCharges"))
    if type_code == "BOL" and (any(n not in (0, 1) for n in counts) or sum(counts) > 1):
        problems.append(
            _problem("ORIGINALS", "an electronic BOL has at most one original", "$.numberOfOriginalsWithCharges")
        )
    for copies in ("numberOfCopiesWithCharges", "numberOfCopiesWithoutCharges"):
        if copies in document:
            problems.append(_problem("ORIGINALS", "an electronic BL has no copies", f"$.{copies}"))

    on_board = document.get("isShippedOnBoardType")
    has_on_board, has_received = "shippedOnBoardDate" in document, "receivedForShipmentDate" in document
    if on_board is True and (not has_on_board or has_received):
        problems.append(
            _problem(
                "SHIPPED_ON_BOARD_DATE",
                "a shipped-on-board BL carries shippedOnBoardDate and no receivedForShipmentDate",
                "$.shippedOnBoardDate",
            )
        )
    if on_board is False and (not has_received or has_on_board):
        problems.append(
            _problem(
                "SHIPPED_ON_BOARD_DATE",
                "a received-for-shipment BL carries receivedForShipmentDate and no shippedOnBoardDate",
                "$.receivedForShipmentDate",
            )
        )

    if ("declaredValue" in document) != ("declaredValueCurrency" in document):
        problems.append(
            _problem(
                "DECLARED_VALUE_CURRENCY",
                "declaredValue and declaredValueCurrency come together",
                "$.declaredValueCurrency",
            )
        )

    transports = document.get("transports")
    if isinstance(transports, dict):
        for carriage, place, code in (
            ("preCarriageBy", "placeOfReceipt", "PRE_CARRIAGE_PLACE"),
            ("onCarriageBy", "placeOfDelivery", "ON_CARRIAGE_PLACE"),
        ):
            if carriage in transports and place not in transports:
                problems.append(_problem(code, f"{carriage} requires {place}", f"$.transports.{place}"))

    if is_to_order is False:
        if "consignee" not in parties:
            problems.append(
                _problem("CONSIGNEE_ENDORSEE", "a straight BL names its consignee", "$.documentParties.consignee")
            )
        if "endorsee" in parties:
            problems.append(
                _problem("CONSIGNEE_ENDORSEE", "a straight BL has no endorsee", "$.documentParties.endorsee")
            )
    if is_to_order is True:
        if "consignee" in parties:
            problems.append(
                _problem(
                    "CONSIGNEE_ENDORSEE",
                    "a to-order BL names an endorsee, not a consignee",
                    "$.documentParties.consignee",
                )
            )
        if not _objects(parties.get("notifyParties")):
            problems.append(
                _problem(
                    "NOTIFY_PARTY_REQUIRED",
                    "a negotiable BL names at least one notify party",
                    "$.documentParties.notifyParties",
                )
            )

    for path, party in _document_parties(parties):
        if not (party.get("address") or party.get("addressLines") or party.get("identifyingCodes")):
            problems.append(_problem("PARTY_ADDRESS_OR_CODES", "every party has an address or identifying codes", path))

    functions = [o.get("partyFunction") for o in _objects(parties.get("other"))]
    if len(functions) != len(set(map(str, functions))):
        problems.append(
            _problem(
                "OTHER_PARTY_FUNCTION_UNIQUE", "other[].partyFunction values are unique", "$.documentParties.other"
            )
        )

    problems += _equipment_problems(document)
    return problems


def _document_parties(parties: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name in _DOCUMENT_PARTY_SINGLES:
        if isinstance(parties.get(name), dict):
            yield f"$.documentParties.{name}", parties[name]
    for index, party in enumerate(_objects(parties.get("notifyParties"))):
        yield f"$.documentParties.notifyParties[{index}]", party
    for index, other in enumerate(_objects(parties.get("other"))):
        if isinstance(other.get("party"), dict):
            yield f"$.documentParties.other[{index}].party", other["party"]


def _equipment_problems(document: dict[str, Any]) -> list[ErrorDetail]:
    problems = []
    references: list[Any] = []
    for index, ute in enumerate(_objects(document.get("utilizedTransportEquipments"))):
        equipment = ute.get("equipment")
        reference = equipment.get("equipmentReference") if isinstance(equipment, dict) else None
        path = f"$.utilizedTransportEquipments[{index}].equipment.equipmentReference"
        if reference in references:
            problems.append(_problem("EQUIPMENT_REFERENCES", f"equipment {reference} is listed twice", path))
        references.append(reference)
        if isinstance(reference, str) and _LOOKS_LIKE_CONTAINER.match(reference):
            if not _CONTAINER_NUMBER.match(reference):
                problems.append(
                    _problem(
                        "ISO6346_CHECK_DIGIT",
                        f"{reference}: the fourth letter of an ISO 6346 container number is U, J or Z",
                        path,
                    )
                )
            elif iso6346_check_digit(reference[:10]) != int(reference[10]):
                expected = iso6346_check_digit(reference[:10])
                problems.append(
                    _problem(
                        "ISO6346_CHECK_DIGIT",
                        f"{reference}: the ISO 6346 check digit is {expected}, not {reference[10]}",
                        path,
                    )
                )
    for item_index, item in enumerate(_objects(document.get("consignmentItems"))):
        for cargo_index, cargo in enumerate(_objects(item.get("cargoItems"))):
            reference = cargo.get("equipmentReference")
            if reference not in references:
                problems.append(
                    _problem(
                        "EQUIPMENT_REFERENCES",
                        f"cargo item equipment {reference} is not among the utilizedTransportEquipments",
                        f"$.consignmentItems[{item_index}].cargoItems[{cargo_index}].equipmentReference",
                    )
                )
    return problems


def validate_transport_document(document: object) -> None:
    """Raise :class:`InvalidDocument` listing every schema and business-rule problem; return if it is valid."""
    if not isinstance(document, dict):
        raise InvalidDocument(
            "the transport document must be a JSON object",
            details=[ErrorDetail(message="not an object", code="SCHEMA", json_path="$")],
        )
    problems = _schema_problems(document) + _rule_problems(document)
    if problems:
        raise InvalidDocument(
            f"the transport document breaks {len(problems)} DCSA eBL 3.0.3 schema or business rule(s)",
            details=problems,
        )
