"""Typed dependencies: the node, the authenticated caller, and the strictly parsed JSON body."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BeforeValidator

from ebl import canonical
from ebl.blocking import in_thread
from ebl.errors import BadRequest, PayloadTooLarge, Unauthenticated
from ebl.service import Caller, Node


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


async def get_node(request: Request) -> Node:
    return _node(request)


NodeDep = Annotated[Node, Depends(get_node)]

# The dependencies below read the node from the app themselves instead of depending on get_node: every dependency
# FastAPI resolves costs a request some 15 µs.


def bearer_token(header: str) -> str | None:
    """The API key of an ``Authorization: Bearer <key>`` header, however the scheme is spelt; None for another."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def get_caller(request: Request) -> Caller:
    node = _node(request)
    header = request.headers.get("authorization")
    if header is None:
        raise Unauthenticated("send an API key as 'Authorization: Bearer <key>'")
    token = bearer_token(header)
    if token is None:
        raise Unauthenticated("use 'Authorization: Bearer <api-key>'")
    # A key seen before is answered from memory; a new one is looked up in the database, on a thread.
    caller = node.remembered_caller(token) or await in_thread(node.authenticate, token)
    request.state.party_id = caller.id  # for the access log: who, never the key
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
    return bytes(received)


async def _json(request: Request, limit: int) -> Any:
    """The body as I-JSON (duplicate keys, NaN, 2^53+ integers refused), within ``limit`` bytes, with no U+0000 in
    any string: PostgreSQL cannot store it in text, and a node answers alike on either database."""
    body = await _read_body(request, limit)
    value = canonical.loads(body)
    if canonical.holds_nul(body, value):
        raise BadRequest("a string of the body holds U+0000 (NUL), which this node does not take")
    return value


async def get_json_body(request: Request) -> Any:
    """The body as I-JSON, within ``EBL_MAX_BODY_BYTES``."""
    return await _json(request, _node(request).settings.max_body_bytes)


async def get_large_json_body(request: Request) -> Any:
    """A body that carries an eBL's whole chain or a document, as I-JSON, within
    :attr:`~ebl.config.Settings.max_large_body_bytes`."""
    return await _json(request, _node(request).settings.max_large_body_bytes)


async def get_text_body(request: Request) -> str:
    """The body as UTF-8 text, within the size limit."""
    try:
        return (await _read_body(request, _node(request).settings.max_body_bytes)).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None


def _decimal_digits(value: object) -> object:
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("a whole number written in the digits 0-9 only")
    return value


DIGITS = BeforeValidator(_decimal_digits)
"""For a whole-number parameter: pydantic alone reads "1_0", "+5", " 0", "5.0" and other scripts' digits as numbers.
Put it after ``Query(...)`` or ``Path(...)``: before them, their bounds reach the OpenAPI document as ``ge``/``le``,
which JSON Schema does not know, instead of ``minimum``/``maximum``."""

JsonBody = Annotated[Any, Depends(get_json_body)]
LargeJsonBody = Annotated[Any, Depends(get_large_json_body)]
TextBody = Annotated[str, Depends(get_text_body)]
