"""Strict JSON parsing (I-JSON, RFC 7493) and RFC 8785 checksums.

Everything the platform hashes or signs is JSON canonicalised with RFC 8785 (JCS), the form DCSA uses for
``transportDocumentChecksum``. RFC 8785 is defined on I-JSON only, and Python's ``json`` module accepts far
more: duplicate object keys (last one wins, so two parties could read two different documents), ``NaN`` and
``Infinity``, numbers that overflow a double, integers no double can hold, and lone surrogates. ``loads``
refuses all of these before anything is hashed, so a checksum always denotes exactly one JSON value.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from typing import Any

import rfc8785

from ebl.errors import ErrorDetail, MalformedJson

_MAX_SAFE_INTEGER = 2**53 - 1


def _refuse_constant(name: str) -> Any:
    raise MalformedJson(f"{name} is not allowed in I-JSON (RFC 7493)")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise MalformedJson(f"the number {text[:40]} overflows an IEEE 754 double (RFC 7493 §2.2)")
    return value


def _parse_int(text: str) -> int:
    # 2^53 - 1 has 16 digits; longer digit strings are out of range, and past 4300 digits int() itself refuses them
    # with a ValueError that is not a JSON error.
    value = int(text) if len(text.lstrip("-")) <= len(str(_MAX_SAFE_INTEGER)) else _MAX_SAFE_INTEGER + 1
    if abs(value) > _MAX_SAFE_INTEGER:
        raise MalformedJson(
            f"the integer {text[:40]} is outside ±(2^53 - 1), the exact integers of I-JSON (RFC 7493 §2.2)"
        )
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise MalformedJson(f"duplicate object key {key!r} (RFC 7493 §2.3)")
            seen.add(key)
    return result


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_unicode(value: Any) -> None:
    """Refuse lone surrogates, which JSON escapes can express but UTF-8 (and so RFC 8785) cannot."""
    for text in strings(value):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedJson("a string holds a lone surrogate, which is not I-JSON (RFC 7493 §2.1)") from None


def holds_nul(text: bytes, value: Any) -> bool:
    """Whether a string of ``value``, parsed from the JSON ``text``, holds U+0000, which PostgreSQL cannot store in
    text and so no node takes. JSON text can hold it only as the escape ``\\u0000``: the text is searched, and only
    then the value."""
    return b"\\u0000" in text and any("\x00" in string for string in strings(value))


def strings(value: Any) -> Iterator[str]:
    """Every string of a parsed JSON value: its object keys too."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


# One decoder for every call, as json.loads keeps one for its defaults: making one costs more than decoding an entry.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_keys,
    parse_constant=_refuse_constant,
    parse_float=_parse_float,
    parse_int=_parse_int,
)


def loads(data: bytes | str) -> Any:
    """Parse JSON text, refusing anything that is not I-JSON with :class:`MalformedJson`."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = _DECODER.decode(text)
    except UnicodeDecodeError:
        raise MalformedJson("the JSON text is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise MalformedJson(
            "the text is not valid JSON",
            details=[ErrorDetail(message=f"{exc.msg} at line {exc.lineno} column {exc.colno}")],
        ) from None
    except RecursionError:
        raise MalformedJson("the JSON is nested too deeply") from None
    # A lone surrogate comes either from the text itself (a str argument) or from a \uD800-\uDFFF escape; only
    # then is the parsed value worth walking.
    if isinstance(data, str):
        _check_unicode(text)
    if _SURROGATE_ESCAPE.search(text):
        _check_unicode(value)
    return value


def canonicalize(value: Any) -> bytes:
    """The RFC 8785 form of a JSON value.

    ``rfc8785`` defines the result. It is pure Python, though, and a transport document's checksum was the largest
    cost of an issuance, so values whose RFC 8785 form Python's own C encoder writes byte for byte — almost every
    document — take that route (:func:`_for_json_module`); ``rfc8785`` writes the rest. tests/test_canonical.py checks
    both routes against the RFC's vectors, an independent serialiser and ``rfc8785`` on random values.
    """
    try:
        try:
            ready = _for_json_module(value)
        except _NotPlainJson:
            return rfc8785.dumps(value)
        return json.dumps(ready, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    except (rfc8785.CanonicalizationError, RecursionError, UnicodeEncodeError) as exc:
        raise MalformedJson(f"the value cannot be canonicalised with RFC 8785: {exc}") from None


class _NotPlainJson(Exception):
    """The value holds something whose RFC 8785 form the json module would not write."""


def _for_json_module(value: Any) -> Any:
    """``value`` ready for ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` to write its
    RFC 8785 form, or :class:`_NotPlainJson`.

    That encoder and RFC 8785 agree on ``null``, ``true``, ``false``, integers (within ±2^53, the I-JSON range), and
    strings: both escape exactly ``"``, ``\\`` and U+0000–U+001F, with the short escapes for \\b \\t \\n \\f \\r and
    lowercase ``\\u00xx`` for the others. They order object keys alike when no key holds a character beyond U+FFFF
    (RFC 8785 compares UTF-16 code units, Python code points; they differ only for surrogate pairs). For a double
    with 10^-4 ≤ |x| < 10^16 both write the shortest digits that round-trip (``rfc8785`` takes them from ``repr``) in
    plain decimal notation, except that RFC 8785 writes an integral one without ".0" (11620.0 as 11620): such a
    double is handed over as the integer it is, exactly. Zero is 0. Anything else — other doubles, other types, keys
    beyond the BMP — goes to ``rfc8785``.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
            return value
        raise _NotPlainJson
    if kind is float:
        if 1e-4 <= abs(value) < 1e16:
            return int(value) if value.is_integer() else value
        if value == 0:
            return 0  # also -0.0
        raise _NotPlainJson
    if kind is list:
        return [_for_json_module(item) for item in value]
    if kind is dict:
        for key in value:
            if type(key) is not str or (not key.isascii() and max(key) > "\uffff"):
                raise _NotPlainJson
        return {key: _for_json_module(item) for key, item in value.items()}
    raise _NotPlainJson


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checksum(value: Any) -> str:
    """``sha256_hex(JCS(value))``: DCSA's ``transportDocumentChecksum`` and ``issueToChecksum``."""
    return sha256_hex(canonicalize(value))


def text_and_checksum(value: Any) -> tuple[str, str]:
    """The RFC 8785 text of a value and its :func:`checksum`, from one serialisation: a transport document is stored
    as the text its checksum is of."""
    canonical = canonicalize(value)
    return canonical.decode(), sha256_hex(canonical)
