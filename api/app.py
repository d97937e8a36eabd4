"""The FastAPI adapter: ``create_app`` wires a :class:`~ebl.service.Node` to HTTP."""

from __future__ import annotations

from fastapi import FastAPI

from api import errors, openapi
from api.routes import dcsa, ebls, log, meta, verify
from ebl.config import Settings
from ebl.service import Node

DESCRIPTION = """\
Electronic bills of lading for the Chongqing–Singapore rail-sea corridor: DCSA eBL 3.0.3 documents, issued,
transferred, endorsed and surrendered on a signed, hash-chained ledger, and verifiable offline.

Authenticate with `Authorization: Bearer <api-key>` (sandbox keys: `GET /sandbox/parties`). Every error is a DCSA
`ErrorResponse`. `CQSB` and `SGSB` are this project's sandbox platform codes, not DCSA-registered ones.
"""


def create_app(node: Node | None = None, settings: Settings | None = None) -> FastAPI:
    """An app for ``node``, or for a node opened from ``settings`` (the environment by default)."""
    node = node or Node.open(settings or Settings())
    app = FastAPI(title="eBL corridor node", version="0.1.0", description=DESCRIPTION)
    app.state.node = node
    errors.install(app)
    openapi.install(app)
    for module in (meta, ebls, dcsa, verify, log):
        app.include_router(module.router)
    return app
