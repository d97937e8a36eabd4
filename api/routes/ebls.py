"""Our v1 API: issue, act on, read and export eBLs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from api import idempotency
from api.deps import DIGITS, CallerDep, JsonBody, NodeDep
from api.openapi import ERRORS, request_body
from ebl.service import EblPage, EblView, IssueRequest, TransactionRequest, parse_model

router = APIRouter(prefix="/v1/ebls", tags=["eBLs"])

_IDEMPOTENCY = "Send an `Idempotency-Key` header to make a retry safe: the same key and body replay the first answer."


@router.post(
    "",
    status_code=201,
    response_model=EblView,
    summary="Issue an eBL (carrier)",
    description="Validates the document against DCSA eBL 3.0.3, signs the ISSUE entry with the carrier's key and "
    "gives possession to `issueTo`. " + _IDEMPOTENCY,
    responses={k: ERRORS[k] for k in (400, 401, 403, 409, 413)},
    openapi_extra=request_body(IssueRequest),
)
async def issue(request: Request, node: NodeDep, caller: CallerDep, body: JsonBody) -> Response:
    return await idempotency.run(
        request, node, caller, body, 201, lambda: node.issue(caller, parse_model(IssueRequest, body))
    )


@router.get("", summary="eBLs the caller is or was involved in (verifiers: all)", responses={401: ERRORS[401]})
async def list_ebls(
    node: NodeDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=100), DIGITS] = 20,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> EblPage:
    return await node.list_ebls(caller, limit=limit, cursor=cursor)


@router.post(
    "/{reference:path}/transactions",
    status_code=201,
    response_model=EblView,
    summary="Act on an eBL: transfer, endorse, sign, surrender; the carrier's SACC/SREJ",
    description="The node signs the chain entry with the caller's key. A refused action names the rule in "
    "`errors[].errorCodeText`. " + _IDEMPOTENCY,
    responses={k: ERRORS[k] for k in (400, 401, 403, 404, 409, 413, 503)},
    openapi_extra=request_body(TransactionRequest),
)
async def act(request: Request, node: NodeDep, caller: CallerDep, reference: str, body: JsonBody) -> Response:
    return await idempotency.run(
        request, node, caller, body, 201, lambda: node.act(caller, reference, parse_model(TransactionRequest, body))
    )


@router.get(
    "/{reference:path}/chain",
    summary="The signed chain entries (compact JWS, oldest first)",
    responses={k: ERRORS[k] for k in (401, 404)},
)
async def get_chain(node: NodeDep, caller: CallerDep, reference: str) -> dict[str, list[str]]:
    return {"entries": await node.chain_entries(caller, reference)}


@router.get(
    "/{reference:path}/bundle",
    summary="A self-contained bundle for offline verification",
    description="Verify it with `POST /v1/verify` or offline: `ebl verify BUNDLE --trust keys/trust.json`.",
    responses={k: ERRORS[k] for k in (401, 404)},
)
async def get_bundle(node: NodeDep, caller: CallerDep, reference: str) -> dict[str, Any]:
    return await node.bundle(caller, reference)


@router.get(
    "/{reference:path}/transfers",
    summary="Its transfers to other platforms (DCSA PINT), with the receivers' signed answers",
    description="`PENDING` while the node retries (with `lastError`), then `DELIVERED` (`RECE`/`DUPE`) or `REFUSED`; "
    "`signedResponse` is the receiving platform's signed answer, kept as the receipt.",
    responses={k: ERRORS[k] for k in (401, 404)},
)
async def get_transfers(node: NodeDep, caller: CallerDep, reference: str) -> list[dict[str, Any]]:
    return await node.transfers_of(caller, reference)


# DCSA lets a reference hold "/" (sent as %2F, which the server decodes): every route takes the rest of the path as the
# reference, so this one comes after the routes that end in a fixed segment.
@router.get(
    "/{reference:path}", summary="The document and its current state", responses={k: ERRORS[k] for k in (401, 404)}
)
async def get_ebl(node: NodeDep, caller: CallerDep, reference: str) -> EblView:
    return await node.get(caller, reference)
