"""Verification of a bundle: no authentication, no database read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import DIGITS, LargeJsonBody, NodeDep
from api.openapi import ERRORS, request_body
from ebl.blocking import in_thread
from ebl.bundle import Bundle
from ebl.verify import VerificationReport

router = APIRouter(tags=["verification"])


@router.post(
    "/v1/verify",
    summary="Verify an eBL bundle against this node's trust store",
    description="Answers 200 with the report whether the verdict is VALID or INVALID; 400 only when the body is "
    "not a bundle at all.",
    responses={k: ERRORS[k] for k in (400, 413)},
    openapi_extra=request_body(Bundle),
)
async def verify(
    node: NodeDep,
    body: LargeJsonBody,
    witnesses: Annotated[
        int, Query(ge=0, le=16, description="cosignatures of other trusted nodes the checkpoint must carry"), DIGITS
    ] = 0,
) -> VerificationReport:
    return await in_thread(lambda: node.verify(body, witnesses=witnesses))
