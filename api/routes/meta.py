"""Health, public keys, the party directory and the sandbox credentials."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import CallerDep, JsonBody, NodeDep
from api.openapi import ERRORS, error, request_body
from ebl.blocking import in_thread
from ebl.service import KeyRegistration, PartyInfo, SandboxParty, parse_model

router = APIRouter()


@router.get("/health", tags=["meta"], summary="Liveness and database reachability (HEAD too)")
# Load balancers and uptime probes often check health with HEAD.
@router.head("/health", include_in_schema=False)
async def health(node: NodeDep) -> dict[str, str]:
    await node.health()
    return {"status": "ok", "platform": node.platform}


@router.get(
    "/metrics",
    tags=["meta"],
    summary="Prometheus metrics of this server process",
    description="Requests by method, route and status; latencies; requests in flight; eBLs and log size "
    "(read from the database at scrape time). Prometheus text exposition format (its version in the Content-Type).",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(request: Request) -> Response:
    return Response(await in_thread(request.app.state.metrics.exposition), media_type=CONTENT_TYPE_LATEST)


@router.get("/.well-known/jwks.json", tags=["meta"], summary="Every public key that signed anything on this node")
async def jwks(node: NodeDep) -> dict[str, Any]:
    return await node.jwks()


@router.get(
    "/sandbox/parties",
    tags=["sandbox"],
    summary="The seeded corridor parties with their API keys (sandbox only)",
    description="CQSB and SGSB are this project's sandbox platform codes, not DCSA-registered ones.",
    responses={404: error("the sandbox is off on this node")},
)
async def sandbox_parties(node: NodeDep) -> list[SandboxParty]:
    return await node.sandbox_parties()


@router.get("/v1/parties", tags=["parties"], summary="Party directory", responses={401: ERRORS[401]})
async def parties(node: NodeDep, _caller: CallerDep) -> list[PartyInfo]:
    return await node.directory()


@router.post(
    "/v1/parties/me/keys",
    tags=["parties"],
    status_code=201,
    summary="Register a public JWK the caller holds itself",
    description="Ed25519 (EdDSA), P-256 (ES256) or RSA ≥ 2048 (PS256/RS256), with `proof`: a compact JWS signed "
    'with the key over `{"partyId": <your party id>, "eblPlatform": <this platform>}` (your id is in '
    "`GET /v1/parties`). The node answers with a key credential it signed. Use the key to sign issuance manifests.",
    responses={k: ERRORS[k] for k in (400, 401, 409)},
    openapi_extra=request_body(KeyRegistration),
)
async def register_key(node: NodeDep, caller: CallerDep, body: JsonBody) -> dict[str, Any]:
    return await node.register_key(caller, parse_model(KeyRegistration, body))
