"""DCSA eBL 3.0.3 document validation: the schema, every business rule, ISO 6346."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebl.document import iso6346_check_digit, validate_transport_document
from ebl.errors import InvalidDocument
from tests.conftest import load_sample
from tests.jsonvalues import json_values, mutate, paths

SAMPLE = load_sample()


def problems(document: Any) -> list[tuple[str | None, str | None]]:
    with pytest.raises(InvalidDocument) as caught:
        validate_transport_document(document)
    return [(d.code, d.json_path) for d in caught.value.details]


def variant(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    document = copy.deepcopy(SAMPLE)
    edit(document)
    return document


def straight(document: dict[str, Any]) -> None:
    document["isToOrder"] = False
    document["documentParties"]["consignee"] = document["documentParties"].pop("endorsee")


def blank(document: dict[str, Any]) -> None:
    del document["documentParties"]["endorsee"]


def sea_waybill(document: dict[str, Any]) -> None:
    straight(document)
    document["transportDocumentTypeCode"] = "SWB"
    document["numberOfOriginalsWithCharges"] = 0
    del document["documentParties"]["notifyParties"]


def received_for_shipment(document: dict[str, Any]) -> None:
    document["isShippedOnBoardType"] = False
    document["receivedForShipmentDate"] = document.pop("shippedOnBoardDate")


def declared_value(document: dict[str, Any]) -> None:
    document["declaredValue"] = 1_250_000.0
    document["declaredValueCurrency"] = "USD"


def unknown_code_lists(document: dict[str, Any]) -> None:
    document["documentParties"]["endorsee"]["eblPlatform"] = "ZZZZ"
    document["documentParties"]["endorsee"]["identifyingCodes"][0]["codeListProvider"] = "NEWPROVIDER"


@pytest.mark.parametrize(
    "edit",
    [lambda d: None, straight, blank, sea_waybill, received_for_shipment, declared_value, unknown_code_lists],
    ids=["sample", "straight", "blank", "sea-waybill", "received-for-shipment", "declared-value", "code-lists"],
)
def test_valid_documents_pass(edit: Callable[[dict[str, Any]], None]) -> None:
    validate_transport_document(variant(edit))


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is _DELETE:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value

    return edit


_DELETE = object()


@pytest.mark.parametrize(
    ("edit", "code", "json_path"),
    [
        (_set("transportDocumentTypeCode", "SWB"), "TO_ORDER_REQUIRES_BOL", "$.isToOrder"),
        (_set("numberOfOriginalsWithoutCharges", 1), "ORIGINALS", "$.numberOfOriginalsWithCharges"),
        (_set("numberOfCopiesWithCharges", 1), "ORIGINALS", "$.numberOfCopiesWithCharges"),
        (
            lambda d: (sea_waybill(d), d.update(numberOfOriginalsWithCharges=1)),
            "ORIGINALS",
            "$.numberOfOriginalsWithCharges",
        ),
        (_set("shippedOnBoardDate", _DELETE), "SHIPPED_ON_BOARD_DATE", "$.shippedOnBoardDate"),
        (_set("isShippedOnBoardType", False), "SHIPPED_ON_BOARD_DATE", "$.receivedForShipmentDate"),
        (_set("declaredValue", 100.0), "DECLARED_VALUE_CURRENCY", "$.declaredValueCurrency"),
        (_set("transports.placeOfReceipt", _DELETE), "PRE_CARRIAGE_PLACE", "$.transports.placeOfReceipt"),
        (_set("transports.onCarriageBy", "TRUCK"), "ON_CARRIAGE_PLACE", "$.transports.placeOfDelivery"),
        (_set("isToOrder", False), "CONSIGNEE_ENDORSEE", "$.documentParties.consignee"),
        (
            lambda d: (straight(d), d["documentParties"].update(endorsee=d["documentParties"]["consignee"])),
            "CONSIGNEE_ENDORSEE",
            "$.documentParties.endorsee",
        ),
        (
            lambda d: d["documentParties"].update(consignee=d["documentParties"]["endorsee"]),
            "CONSIGNEE_ENDORSEE",
            "$.documentParties.consignee",
        ),
        (_set("documentParties.notifyParties", _DELETE), "NOTIFY_PARTY_REQUIRED", "$.documentParties.notifyParties"),
        (
            lambda d: [d["documentParties"]["shipper"].pop(k) for k in ("address", "identifyingCodes")],
            "PARTY_ADDRESS_OR_CODES",
            "$.documentParties.shipper",
        ),
        (
            _set(
                "documentParties.other",
                [
                    {"partyFunction": "DDR", "party": {"partyName": "A", "addressLines": ["x"]}},
                    {"partyFunction": "DDR", "party": {"partyName": "B", "addressLines": ["y"]}},
                ],
            ),
            "OTHER_PARTY_FUNCTION_UNIQUE",
            "$.documentParties.other",
        ),
        (_set("consignmentItems.0.cargoItems.1.equipmentReference", "MSKU1234565"), None, None),
        (
            _set("utilizedTransportEquipments.1.equipment.equipmentReference", "MSKU1234565"),
            "EQUIPMENT_REFERENCES",
            "$.utilizedTransportEquipments[1].equipment.equipmentReference",
        ),
        (
            _set("consignmentItems.0.cargoItems.1.equipmentReference", "CSQU3054383"),
            "EQUIPMENT_REFERENCES",
            "$.consignmentItems[0].cargoItems[1].equipmentReference",
        ),
        (
            lambda d: (
                _set("utilizedTransportEquipments.0.equipment.equipmentReference", "MSKU1234566")(d),
                _set("consignmentItems.0.cargoItems.0.equipmentReference", "MSKU1234566")(d),
            ),
            "ISO6346_CHECK_DIGIT",
            "$.utilizedTransportEquipments[0].equipment.equipmentReference",
        ),
        (_set("transportDocumentStatus", "DRAFT"), "DOCUMENT_STATUS", "$.transportDocumentStatus"),
    ],
)
def test_each_business_rule_is_enforced(
    edit: Callable[[dict[str, Any]], Any], code: str | None, json_path: str | None
) -> None:
    document = variant(edit)
    if code is None:
        # Two cargo items in one container is fine: references must exist, not be distinct.
        validate_transport_document(document)
        return
    assert (code, json_path) in problems(document)


@pytest.mark.parametrize(
    ("edit", "json_path"),
    [
        (_set("carrierCode", _DELETE), "$.carrierCode"),
        (_set("transportDocumentReference", "X" * 21), "$.transportDocumentReference"),
        (_set("transportDocumentReference", " YXRS2611"), "$.transportDocumentReference"),
        (_set("transportDocumentReference", "YXRS2611\n"), "$.transportDocumentReference"),
        (_set("transports.portOfLoading.UNLocationCode", "CNQZ1"), "$.transports.portOfLoading.UNLocationCode"),
        (_set("isToOrder", "true"), "$.isToOrder"),
        (_set("receiptTypeAtOrigin", "RAMP"), "$.receiptTypeAtOrigin"),
        (_set("issueDate", "2026-02-30"), "$.issueDate"),
        (
            _set("consignmentItems.0.cargoItems.0.outerPackaging.numberOfPackages", 0),
            "$.consignmentItems[0].cargoItems[0].outerPackaging.numberOfPackages",
        ),
    ],
)
def test_schema_violations_are_reported_with_their_path(edit: Callable[[dict[str, Any]], None], json_path: str) -> None:
    assert ("SCHEMA", json_path) in problems(variant(edit))


def test_every_problem_is_listed_at_once() -> None:
    document = variant(lambda d: (_set("carrierCode", _DELETE)(d), _set("declaredValue", 1.0)(d)))
    found = problems(document)
    assert ("SCHEMA", "$.carrierCode") in found
    assert ("DECLARED_VALUE_CURRENCY", "$.declaredValueCurrency") in found


@pytest.mark.parametrize("number", ["MSKU1234565", "TGHU7654320", "CSQU3054383"])
def test_iso6346_known_numbers(number: str) -> None:
    assert iso6346_check_digit(number[:10]) == int(number[10])


def test_iso6346_refuses_malformed_input() -> None:
    with pytest.raises(ValueError, match="ISO 6346"):
        iso6346_check_digit("msku123456")


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_arbitrary_json_raises_only_invalid_document(value: Any) -> None:
    with pytest.raises(InvalidDocument):
        validate_transport_document(value)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), replacement=json_values, delete=st.booleans())
def test_mutations_of_the_sample_raise_only_invalid_document(
    data: st.DataObject, replacement: Any, delete: bool
) -> None:
    path = data.draw(st.sampled_from(paths(SAMPLE)[1:]))
    with contextlib.suppress(InvalidDocument):
        validate_transport_document(mutate(SAMPLE, path, replacement, delete))
