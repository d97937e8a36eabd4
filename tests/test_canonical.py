"""RFC 8785 checksums and strict I-JSON parsing (ebl.canonical).

The sample's checksum is recomputed here with a small serializer written from RFC 8785 itself, so the test does not
trust the ``rfc8785`` package it checks.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ebl import canonical
from ebl.errors import BadRequest, MalformedJson

PUBLISHED_CHECKSUM = "17113c94dd94be0d8072a4f74e72cf85e40d283943f9bcd6d3b7c6149621c770"
PUBLISHED_LENGTH = 3415


SAMPLE = Path(__file__).resolve().parent.parent / "ebl" / "samples" / "corridor-bl.json"


def sample_bytes() -> bytes:
    return SAMPLE.read_bytes()


# -- an independent RFC 8785 serializer, enough for the value types of the sample ---------------------------------


def es_number(value: float) -> str:
    """ECMAScript Number.prototype.toString (ECMA-262 §6.1.6.1.20), which RFC 8785 §3.2.2.3 prescribes."""
    if value == 0:
        return "0"  # also -0
    if value < 0:
        return "-" + es_number(-value)
    # repr() gives the shortest digit string that round-trips, as ECMAScript does.
    sign, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    assert sign == 0
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = exponent + k  # value = 0.digits × 10^n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{mantissa}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def es_string(value: str) -> str:
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def jcs(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return es_number(value)
    if isinstance(value, str):
        return es_string(value)
    if isinstance(value, list):
        return "[" + ",".join(jcs(item) for item in value) + "]"
    if isinstance(value, dict):
        # Sorted by UTF-16 code units: big-endian UTF-16 bytes compare in the same order.
        keys = sorted(value, key=lambda key: key.encode("utf-16-be"))
        return "{" + ",".join(es_string(key) + ":" + jcs(value[key]) for key in keys) + "}"
    raise TypeError(type(value))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(11620.0, "11620"), (11850.5, "11850.5"), (1e21, "1e+21"), (1e-7, "1e-7"), (-0.0, "0"), (0.000001, "0.000001")],
)
def test_ecmascript_number_formatting(value: float, expected: str) -> None:
    assert canonical.canonicalize(value) == expected.encode()
    assert es_number(value) == expected


# -- the sample's checksum ---------------------------------------------------------------------------------------


def test_sample_checksum_matches_independent_jcs_and_published_value() -> None:
    document = canonical.loads(sample_bytes())
    independent = jcs(document).encode("utf-8")

    assert len(independent) == PUBLISHED_LENGTH
    assert hashlib.sha256(independent).hexdigest() == PUBLISHED_CHECKSUM
    assert canonical.canonicalize(document) == independent
    assert canonical.checksum(document) == PUBLISHED_CHECKSUM


def test_sample_holds_the_floats_that_make_naive_serialisation_wrong() -> None:
    document = canonical.loads(sample_bytes())
    weights = [item["cargoGrossWeight"]["value"] for item in document["consignmentItems"][0]["cargoItems"]]
    assert weights == [11850.5, 11620.0]
    assert b'"value":11620}' in canonical.canonicalize(document)


def test_json_dumps_sort_keys_is_not_jcs() -> None:
    document = canonical.loads(sample_bytes())
    naive = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert naive != canonical.canonicalize(document)
    assert b"11620.0" in naive
    assert hashlib.sha256(naive).hexdigest() != PUBLISHED_CHECKSUM


def test_checksum_ignores_formatting_and_key_order_of_the_received_text() -> None:
    document = canonical.loads(sample_bytes())
    reordered = json.dumps(dict(reversed(list(document.items()))), indent=4)
    assert canonical.checksum(canonical.loads(reordered)) == PUBLISHED_CHECKSUM


def test_checksum_changes_with_any_value() -> None:
    document = canonical.loads(sample_bytes())
    document["consignmentItems"][0]["cargoItems"][1]["cargoGrossWeight"]["value"] = 11620.5
    assert canonical.checksum(document) != PUBLISHED_CHECKSUM


def test_sha256_hex() -> None:
    assert canonical.sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# -- RFC 8785 examples ------------------------------------------------------------------------------------------

# RFC 8785 Appendix B: IEEE 754 bit patterns and their JCS text.
NUMBER_VECTORS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), NUMBER_VECTORS)
def test_rfc8785_number_vectors(bits: str, expected: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonical.canonicalize(value) == expected.encode()
    assert es_number(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e21", "1e+21"),
        ("1E21", "1e+21"),
        ("1e-7", "1e-7"),
        ("-0", "0"),
        ("-0.0", "0"),
        ("4.50", "4.5"),
        ("2e-3", "0.002"),
    ],
)
def test_numbers_parsed_then_canonicalised(text: str, expected: str) -> None:
    assert canonical.canonicalize(canonical.loads(text)) == expected.encode()


def test_rfc8785_section_3_2_2_example() -> None:
    text = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    value = canonical.loads(text)
    assert canonical.canonicalize(value) == expected.encode("utf-8")
    assert jcs(value) == expected


def test_rfc8785_key_ordering_by_utf16_code_units() -> None:
    text = (
        '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh",'
        ' "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control",'
        ' "\\u00f6": "Latin Small Letter O With Diaeresis"}'
    )
    value = canonical.loads(text)
    out = canonical.canonicalize(value).decode("utf-8")
    order = [out.index(json.dumps(name)[1:-1]) for name in ("Carriage", "One", "Control", "Latin", "Euro", "Emoji")]
    assert order == sorted(order)
    # The emoji (surrogates D83D DE00) sorts before U+FB33 by UTF-16 code units, though after it by code point.
    assert out.index("Emoji") < out.index("Hebrew")
    assert out == jcs(value)


def test_strings_escape_only_what_rfc8785_escapes() -> None:
    value = {"s": "é/\u2028\x7f\x1f\t"}
    assert canonical.canonicalize(value) == '{"s":"é/\u2028\x7f\\u001f\\t"}'.encode()


_BOUNDARY_DOUBLES = [
    x
    for edge in (1e-4, 1e16, 2.0**53, 1e21, 1e-6, 0.5)
    for x in (edge, math.nextafter(edge, 0), math.nextafter(edge, math.inf), -edge)
]
_keys = st.text(alphabet=st.characters(codec="utf-8"), max_size=6) | st.sampled_from(["\ufb33", "\U0001f600", "\r"])
_any_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(_BOUNDARY_DOUBLES)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=3000, deadline=None)
@given(_any_json)
def test_canonicalize_writes_what_rfc8785_writes(value: Any) -> None:
    """Both routes of canonicalize (Python's C encoder where it writes RFC 8785 exactly, rfc8785 elsewhere) agree
    with the rfc8785 package on every value, floats of every magnitude and keys beyond the BMP included."""
    assert canonical.canonicalize(value) == rfc8785.dumps(value)


def test_the_sample_document_takes_the_c_encoders_route() -> None:
    # The reason for the second route: a transport document's floats (weights, volumes) stay on it.
    document = json.loads(sample_bytes())
    assert canonical._for_json_module(document) is not None
    assert canonical.canonicalize(document) == rfc8785.dumps(document)


def test_canonicalize_refuses_values_that_are_not_i_json() -> None:
    for value in (float("nan"), float("inf"), 2**53, {1: "x"}, b"bytes", {"\udc00": 1}, "\ud800"):
        with pytest.raises(MalformedJson):
            canonical.canonicalize(value)


# -- strict parsing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 1}',
        '{"a": 1, "a": 2}',
        '{"outer": {"k": 1, "k": 2}}',
        '[{"k": true, "k": false}]',
        "NaN",
        "[NaN]",
        '{"x": Infinity}',
        "-Infinity",
        "1e400",
        "-1e400",
        "[1E400]",
        str(2**53),
        str(-(2**53)),
        str(2**64),
        "1" * 5000,
        '{"big": ' + "9" * 5000 + "}",
        '"\\ud800"',
        '"\\udc00 trailing"',
        '{"\\ud800": 1}',
        '"\\ude00\\ud83d"',
        "",
        "{",
        "[1,]",
        "{'a': 1}",
        "{} {}",
        "undefined",
        '"\ufeff"x',
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_loads_refuses_non_i_json(text: str) -> None:
    with pytest.raises(MalformedJson) as raised:
        canonical.loads(text)
    assert raised.value.code == "MALFORMED_JSON"
    assert isinstance(raised.value, BadRequest)


@pytest.mark.parametrize("data", [b'"\xff"', b'{"a": "\xc3"}', b"\xed\xa0\x80", '{"a": 1}'.encode("utf-16")])
def test_loads_refuses_invalid_utf8(data: bytes) -> None:
    with pytest.raises(MalformedJson):
        canonical.loads(data)


def test_loads_refuses_a_byte_order_mark() -> None:
    with pytest.raises(MalformedJson):
        canonical.loads(b"\xef\xbb\xbf{}")


@pytest.mark.parametrize("value", [2**53 - 1, -(2**53 - 1), 0, -1])
def test_loads_accepts_safe_integers(value: int) -> None:
    assert canonical.loads(str(value)) == value
    assert canonical.canonicalize(value) == str(value).encode()


def test_loads_accepts_nested_data_and_surrogate_pairs() -> None:
    text = '{"a": [1, 2.5, {"b": [null, true, false, "x"]}], "c": {"d": {"e": {}}}, "emoji": "\\ud83d\\ude00"}'
    value = canonical.loads(text)
    assert value == {
        "a": [1, 2.5, {"b": [None, True, False, "x"]}],
        "c": {"d": {"e": {}}},
        "emoji": "\U0001f600",
    }
    assert canonical.loads(text.encode("utf-8")) == value


def test_loads_accepts_large_doubles_and_tiny_ones() -> None:
    assert canonical.loads("1.7976931348623157e308") == 1.7976931348623157e308
    assert canonical.loads("1e-400") == 0.0
    assert canonical.loads("1e300") == 1e300


def test_same_bytes_same_value_bytes_or_text() -> None:
    raw = sample_bytes()
    assert canonical.loads(raw) == canonical.loads(raw.decode("utf-8"))
