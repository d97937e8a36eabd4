"""The FastAPI adapter: ``create_app`` wires a :class:`~ebl.service.Node` to HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
from fastapi import FastAPI
from starlette.routing import Route

from api import errors, openapi
from api.observability import Metrics, Observability
from api.routes import dcsa, ebls, log, meta, pint, verify
from ebl.blocking import in_thread
from ebl.config import Settings
from ebl.pint import Courier
from ebl.ratelimit import RateLimiter
from ebl.service import Node

logger = logging.getLogger("ebl.api")

DESCRIPTION = """\
Electronic bills of lading for the Chongqing–Singapore rail-sea corridor: DCSA eBL 3.0.3 documents, issued,
transferred, endorsed and surrendered on a signed, hash-chained ledger, and verifiable offline.

Authenticate with `Authorization: Bearer <api-key>` (sandbox keys: `GET /sandbox/parties`). Every error is a DCSA
`ErrorResponse`, except the answers DCSA PINT and C2SP tlog-witness fix (a signed JWS; the witness's 409). Each API
key is rate limited (429 with `Retry-After`); send `X-Request-ID` to find a request in the node's logs, and every
answer carries the id it was logged under. `CQSB` and `SGSB` are this project's sandbox platform codes, not
DCSA-registered ones.
"""


async def _checkpoint_every(node: Node, seconds: float) -> None:
    """Every ``seconds``: sign a checkpoint if the log has grown, and ask the peer witnesses to cosign it."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await in_thread(node.sign_checkpoint)
            if node.settings.witness_urls:
                await in_thread(_push, node)
        except Exception:
            logger.exception("signing or witnessing the periodic checkpoint failed; trying again in %s s", seconds)


def _push(node: Node) -> None:
    with httpx.Client(timeout=10) as client:
        node.push_checkpoint(client)


@contextlib.contextmanager
def _courier(node: Node) -> Iterator[None]:
    """With peers: the thread that delivers eBLs to their platforms (PINT), woken whenever an action sends one.

    Every server process runs one, so that an action wakes the courier of the process that recorded it; the couriers
    claim each attempt in the database and never make the same one (:meth:`ebl.transfers.Transfers.deliver_due`)."""
    if not node.settings.peers:
        yield
        return
    with httpx.Client(timeout=10) as client:
        courier = Courier(lambda: node.transfers.deliver_due(client))
        node.departed = courier.wake
        courier.start()
        try:
            yield
        finally:
            courier.stop()


def create_app(node: Node | None = None, settings: Settings | None = None) -> FastAPI:
    """An app for ``node``, or for a node opened from ``settings`` (the environment by default)."""
    owns_node = node is None
    node = node or Node.open(settings or Settings())

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Blocking work runs on these threads (ebl.blocking.in_thread): commits, waits for the write turn, CPU-bound
        # verification, the periodic checkpoint. Past a few, threads only queue for the interpreter lock, and
        # every one of them makes the event loop wait for it too, so the pool stays small.
        handlers = ThreadPoolExecutor(node.settings.worker_threads, thread_name_prefix="ebl-blocking")
        asyncio.get_running_loop().set_default_executor(handlers)
        # What start-up built (routes, models, the node) lives as long as the process: keep it out of the collector's
        # full collections, which otherwise walk all of it and stall every request for up to a tenth of a second.
        # Collect first, so that no garbage is frozen with it.
        gc.collect()
        gc.freeze()
        # The collector's youngest generation is examined every 700 container objects allocated and not yet freed
        # (the default): under load that ran several hundred times a second, for ~4.5 % of a process's CPU, and the
        # objects of the requests in flight were all it ever found, alive. Garbage cycles still start a collection.
        gc.set_threshold(10_000, 10, 10)
        task = asyncio.create_task(_checkpoint_every(node, node.settings.checkpoint_interval_seconds))
        try:
            with _courier(node):
                yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            handlers.shutdown()
            if owns_node:
                node.close()

    app = FastAPI(title="eBL corridor node", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.node = node
    app.state.metrics = Metrics(node)
    settings_ = node.settings
    limiter = (
        RateLimiter(settings_.rate_limit_per_second, settings_.rate_limit_burst, time.monotonic)
        if settings_.rate_limit_per_second > 0
        else None
    )
    routers = [module.router for module in (meta, ebls, dcsa, pint, verify, log)]
    for router in routers:
        app.include_router(router)
    # FastAPI's own routes (the OpenAPI document and its pages) and ours.
    routes = [route for route in app.routes if isinstance(route, Route)] + [
        route for router in routers for route in router.routes if isinstance(route, Route)
    ]
    app.add_middleware(
        Observability,
        metrics=app.state.metrics,
        limiter=limiter,
        is_known_key=lambda api_key: node.remembered_caller(api_key) is not None,
        routes=routes,
    )
    errors.install(app, routes)
    openapi.install(app)
    return app
