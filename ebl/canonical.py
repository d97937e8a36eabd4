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
        raise MalformedJson(f"the integer {text[:40]} is beyond ±2^53 and not exact in I-JSON (RFC 7493 §2.2)")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise MalformedJson(f"duplicate object key {key!r} (RFC 7493 §2.3)")
        result[key] = value
    return result


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_unicode(value: Any) -> None:
    """Refuse lone surrogates, which JSON escapes can express but UTF-8 (and so RFC 8785) cannot."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise MalformedJson("a string holds a lone surrogate, which is not I-JSON (RFC 7493 §2.1)") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def loads(data: bytes | str) -> Any:
    """Parse JSON text, refusing anything that is not I-JSON with :class:`MalformedJson`."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_refuse_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
        )
    except UnicodeDecodeError:
        raise MalformedJson("the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise MalformedJson(
            "the body is not valid JSON",
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
    """The RFC 8785 form of a JSON value."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, RecursionError, UnicodeEncodeError) as exc:
        raise MalformedJson(f"the value cannot be canonicalised with RFC 8785: {exc}") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checksum(value: Any) -> str:
    """``sha256_hex(JCS(value))``: DCSA's ``transportDocumentChecksum`` and ``issueToChecksum``."""
    return sha256_hex(canonicalize(value))
