"""DCSA's own paths: eBL Issuance 3.0.3 and Endorsement Chain 3.0.3."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import CallerDep, JsonBody, NodeDep
from api.openapi import ERRORS, request_body
from ebl.service import DcsaIssuanceRequest, IssueRequest, parse_model

router = APIRouter(prefix="/v3", tags=["DCSA"])


@router.put(
    "/ebl-issuance-requests",
    status_code=204,
    summary="DCSA IssuanceRequest (carrier)",
    description="The DCSA eBL Issuance 3.0.3 request exactly; the carrier-signed issuance manifest is required. "
    "The same reference with the same document checksum is 409.",
    responses={k: ERRORS[k] for k in (400, 401, 403, 409, 413)},
    openapi_extra=request_body(DcsaIssuanceRequest),
)
async def issuance_request(node: NodeDep, caller: CallerDep, body: JsonBody) -> Response:
    request = parse_model(DcsaIssuanceRequest, body)
    issue = IssueRequest(
        transportDocument=request.document,
        issueTo=request.issueTo,
        issuanceManifestSignedContent=request.issuanceManifestSignedContent,
    )
    visualisation = request.eBLVisualisationByCarrier
    await node.issue(
        caller,
        issue,
        document_path="$.document",
        visualisation_checksum=visualisation.checksum() if visualisation is not None else None,
    )
    return Response(status_code=204)


@router.get(
    "/endorsement-chains/{reference:path}",
    summary="DCSA endorsement chain (carrier)",
    responses={k: ERRORS[k] for k in (401, 403, 404)},
)
async def endorsement_chain(node: NodeDep, caller: CallerDep, reference: str) -> list[dict[str, Any]]:
    return await node.endorsement_chain(caller, reference)
