"""DCSA PINT 3.0: the receiving side of platform-to-platform transfers (``ebl.transfers``).

Other platforms call these paths; they authenticate by signature, not by API key: every envelope is signed with a
node key this node's trust store holds for the sending platform. Signed answers are JSON strings holding a compact
JWS (``EnvelopeTransferFinishedResponseSignedContent``), signed with this node's key.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from fastapi.responses import JSONResponse

from api.deps import JsonBody, LargeJsonBody, NodeDep
from api.openapi import ERRORS, error
from ebl.transfers import PintAnswer

router = APIRouter(prefix="/v3", tags=["DCSA PINT"])

_SIGNED = {
    "description": "EnvelopeTransferFinishedResponseSignedContent: a JWS, signed by this node's key, whose "
    "responseCode decides the transfer",
    "content": {"application/json": {"schema": {"type": "string"}}},
}
_UNKNOWN_ENVELOPE = error("no open envelope transfer with this reference (`UNKNOWN_ENVELOPE`)")
_Checksum = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the decoded document, hex")]
_Reference = Annotated[str, Path(max_length=100, description="the envelopeReference of the 201 answer")]


def _json(answer: PintAnswer) -> JSONResponse:
    return JSONResponse(answer.body, status_code=answer.status_code)


@router.post(
    "/receiver-validation",
    summary="Is a party known on this platform?",
    description="Body: a DCSA IdentifyingCode. 200 with the party's name; 404 (deliberately vague) otherwise.",
    responses={400: ERRORS[400], 404: error("no such party here")},
)
async def receiver_validation(node: NodeDep, body: JsonBody) -> dict[str, str]:
    return await node.transfers.receiver_validation(body)


@router.post(
    "/envelopes",
    summary="Start an envelope transfer",
    description="Body: a DCSA EblEnvelope (the spec's layout, or the conformance tool's: legacy `action`, issuance "
    "manifest at the root). An optional `eblBundle` extension carries the party-signed chain. 201 lists the "
    "additional documents still missing; otherwise 200 `RECE`/`DUPE`, 422 `BSIG`/`BENV` or 409 `DISE`, signed.",
    responses={
        200: _SIGNED,
        201: {"description": "EnvelopeTransferStartedResponse: send the missing documents, then finish"},
        400: ERRORS[400],
        409: _SIGNED,
        413: ERRORS[413],
        422: _SIGNED,
    },
)
async def start(node: NodeDep, body: LargeJsonBody) -> JSONResponse:
    return _json(await node.transfers.start(body))


@router.put(
    "/envelopes/{reference}/additional-documents/{checksum}",
    response_model=None,
    summary="Transfer an additional document",
    description="Body: a JSON string, the document's bytes in base64. 409 `INCD` (signed) when the bytes do not "
    "match the checksum or the declared size, or the manifest does not declare the document.",
    responses={204: {"description": "received"}, 400: ERRORS[400], 404: _UNKNOWN_ENVELOPE, 409: _SIGNED, 422: _SIGNED},
)
async def put_document(node: NodeDep, reference: _Reference, checksum: _Checksum, body: LargeJsonBody) -> Response:
    answer = await node.transfers.put_document(reference, checksum, body)
    return Response(status_code=204) if answer is None else _json(answer)


@router.put(
    "/envelopes/{reference}/finish-transfer",
    summary="Finish an envelope transfer",
    description="200 `RECE` (or `DUPE` for a transfer accepted before), 409 `MDOC` with the missing documents or "
    "`DISE`, 422 `BSIG`/`BENV`; every answer signed.",
    responses={200: _SIGNED, 400: ERRORS[400], 404: _UNKNOWN_ENVELOPE, 409: _SIGNED, 422: _SIGNED},
)
async def finish(node: NodeDep, reference: _Reference) -> JSONResponse:
    return _json(await node.transfers.finish(reference))
