"""The ledger (docs/ledger.md): C2SP checkpoint and verifier key, RFC 6962 proofs, log entries. No authentication."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse

from api.deps import DIGITS, NodeDep, TextBody
from api.openapi import ERRORS, error

router = APIRouter(prefix="/v1/log", tags=["ledger"])

_Size = Annotated[int, Query(ge=0, le=2**53), DIGITS]


@router.get(
    "/checkpoint",
    response_class=PlainTextResponse,
    summary="The latest signed checkpoint (C2SP tlog-checkpoint note)",
    description="`<origin>\\n<size>\\n<base64 root>\\n`, a blank line, the node's Ed25519 note signature, then a "
    "cosignature line for each peer witness that cosigned it.",
)
async def checkpoint(node: NodeDep) -> str:
    return await node.checkpoint()


@router.get(
    "/vkey",
    response_class=PlainTextResponse,
    summary="The C2SP verifier key of the log (`<origin>+<key ID>+<base64 key>`)",
)
async def vkey(node: NodeDep) -> str:
    return node.ledger.vkey + "\n"


@router.get(
    "/proofs/inclusion",
    summary="RFC 6962 inclusion proof of leaf `index` in the tree of size `treeSize` (hashes in base64)",
    responses={400: ERRORS[400]},
)
async def inclusion(node: NodeDep, index: _Size, treeSize: _Size) -> dict[str, Any]:
    return await node.inclusion_proof(index, treeSize)


@router.get(
    "/proofs/consistency",
    summary="RFC 6962 consistency proof between tree sizes `first` and `second` (hashes in base64)",
    responses={400: ERRORS[400]},
)
async def consistency(node: NodeDep, first: _Size, second: _Size) -> dict[str, Any]:
    return await node.consistency_proof(first, second)


@router.get(
    "/entries/{index}",
    summary="Log entry `index`: the chain entry (compact JWS), its checksum and its leaf hash",
    responses={400: ERRORS[400], 404: error("the log has no entry at this index yet")},
)
async def entry(node: NodeDep, index: Annotated[int, Path(ge=0, le=2**53), DIGITS]) -> dict[str, Any]:
    return await node.log_entry(index)


@router.post(
    "/witness/add-checkpoint",
    response_class=PlainTextResponse,
    summary="C2SP tlog-witness: cosign a peer node's checkpoint",
    description="Body: `old <size>`, the consistency proof (base64 lines), a blank line, the signed checkpoint. "
    "Answers 200 with a cosignature line; 404 for a log this node does not witness; 403 when no trusted key signed "
    "the checkpoint; 400 when old is larger than the checkpoint's size; 409 with this witness's latest size "
    "(`text/x.tlog.size`) when old differs from it; 422 when the consistency proof fails.",
    responses={
        400: ERRORS[400],
        403: error("no trusted key of the log's origin signed the checkpoint"),
        404: error("this node does not witness that log"),
        422: error("the consistency proof does not verify (`INVALID_PROOF`)"),
        409: {
            "description": "old differs from this witness's latest size, which the body holds",
            "content": {"text/x.tlog.size": {"schema": {"type": "string"}}},
        },
    },
    openapi_extra={"requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def add_checkpoint(node: NodeDep, body: TextBody) -> str:
    return await node.add_checkpoint(body)
