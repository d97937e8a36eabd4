"""``Idempotency-Key`` on POST (docs/api.md): the same key and body replay the first answer; another body is 409."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from api.errors import ebl_error_response
from ebl import canonical
from ebl.errors import EblError, LostRace
from ebl.service import Caller, Node, StoredResponse


async def run(
    request: Request,
    node: Node,
    caller: Caller,
    body: Any,
    status_code: int,
    action: Callable[[], Awaitable[BaseModel]],
) -> Response:
    key = request.headers.get("idempotency-key")
    if key is None:
        return _json(await action(), status_code)
    request_hash = canonical.sha256_hex(
        request.method.encode() + b" " + request.url.path.encode() + b"\n" + canonical.canonicalize(body)
    )
    stored = await node.begin_idempotent(caller, key, request_hash)
    if stored is not None:
        return Response(
            stored.body,
            status_code=stored.status_code,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    try:
        result = await action()
    except LostRace:
        # Another action was recorded first: a retry with this key must run again, not replay "read it again".
        await node.finish_idempotent(caller, key, None)
        raise
    except EblError as exc:
        response: Response = ebl_error_response(request, exc)
    except BaseException:
        await node.finish_idempotent(caller, key, None)
        raise
    else:
        response = _json(result, status_code)
    await node.finish_idempotent(caller, key, StoredResponse(response.status_code, bytes(response.body).decode()))
    return response


def _json(model: BaseModel, status_code: int) -> Response:
    # pydantic's own serialiser: an eBL carries its whole document, which jsonable_encoder would walk in Python.
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")
