"""Around every request: its id, the per-API-key rate limit, Prometheus metrics and one JSON access-log line; and the
refusal of a path or query holding U+0000, which no parameter of this API may hold and PostgreSQL cannot store, and of
a query that gives a parameter twice.

A pure ASGI middleware (``Observability``) rather than one per concern: each request is timed, counted, limited and
logged in one place, and the id it is given reaches every log line written while it is handled.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect, Request
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import bearer_token
from api.errors import REQUEST_ID_HEADER, error_response, routes_at
from ebl.logs import REQUEST_ID
from ebl.ratelimit import RateLimiter
from ebl.service import Node, hash_api_key

access_log = logging.getLogger("ebl.access")

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Scrapes and health checks are neither limited nor counted against a client.
UNLIMITED_PATHS = frozenset({"/metrics", "/health"})


class _NodeCollector(Collector):
    """The node's own numbers, read from the database at scrape time."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def collect(self) -> Any:
        ebls, log_size = self._node.counts()
        yield GaugeMetricFamily("ebl_ebls", "eBLs held on this node", value=ebls)
        yield GaugeMetricFamily("ebl_log_size", "leaves in this node's transparency log", value=log_size)


class Metrics:
    """This app's metrics, in a registry of its own (not the process-wide default)."""

    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ebl_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "ebl_http_request_duration_seconds",
            "time to answer an HTTP request",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.in_flight = Gauge("ebl_http_requests_in_flight", "HTTP requests being handled", registry=self.registry)
        self.registry.register(_NodeCollector(node))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


# nginx's code for a request whose client went away before it was answered: nobody is left to answer.
CLIENT_CLOSED_REQUEST = 499


def _buckets(scope: Scope, is_known_key: Callable[[str], bool]) -> list[str]:
    """Whom the rate limit counts: the API key (by its hash, never the key itself), else the client address. The key
    is read as authentication reads it, so that no other spelling of the header gets a bucket of its own. A key this
    process has not seen authenticated counts against the address too: a client inventing a key for every request
    would otherwise get a full bucket every time."""
    client = scope.get("client")
    address = "address:" + (client[0] if client else "unknown")
    for name, value in scope["headers"]:
        if name == b"authorization":
            token = bearer_token(value.decode("latin-1"))
            if token is not None:
                key = "key:" + hash_api_key(token)
                return [key] if is_known_key(token) else [address, key]
    return [address]


def _route_template(scope: Scope, routes: Sequence[Route]) -> str:
    """The path template of the route the request was for, the label of its metrics (``unmatched`` for none).

    FastAPI's routes put themselves in the scope. The route is looked up by the path for the requests this middleware
    answers itself (429, say) and for the framework's own pages (``/openapi.json``, ``/docs``), which do not.
    """
    route = scope.get("route")
    if route is None:
        method = scope["method"]
        route = next((r for r in routes_at(routes, scope["path"]) if r.methods is None or method in r.methods), None)
    return getattr(route, "path_format", "unmatched")


def _repeated_parameter(query: bytes) -> str | None:
    """The first query parameter named twice, if any."""
    if not query:
        return None
    seen: set[str] = set()
    for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in seen:
            return name[:100]
        seen.add(name)
    return None


class Observability:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        limiter: RateLimiter | None,
        is_known_key: Callable[[str], bool],
        routes: Sequence[Route],
    ) -> None:
        """``routes``: all the app's routes, to name the route of a request that none put in its scope."""
        self.app, self.metrics, self.limiter, self.is_known_key = app, metrics, limiter, is_known_key
        self.routes = routes

    def _wait(self, scope: Scope) -> int:
        """0 if the request may go on, else the seconds its client must wait; no bucket after a refusing one pays."""
        if self.limiter is None or scope["path"] in UNLIMITED_PATHS:
            return 0
        for bucket in _buckets(scope, self.is_known_key):
            wait = self.limiter.take(bucket)
            if wait:
                return wait
        return 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        # Each request runs in a task of its own, so the id stays with it, also for a 500 logged further out.
        REQUEST_ID.set(request_id)
        status = 500  # unless the app answers: an exception escaping it becomes a 500 further out

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            wait = self._wait(scope)
            if wait:
                response = error_response(
                    Request(scope), 429, "RATE_LIMITED", f"too many requests for this API key; retry in {wait} s"
                )
                response.headers["Retry-After"] = str(wait)
                await response(scope, receive, send_with_id)
            elif "\x00" in scope["path"] or b"%00" in scope["query_string"]:
                response = error_response(
                    Request(scope), 400, "INVALID_PARAMETER", "the path or the query holds U+0000 (NUL)"
                )
                await response(scope, receive, send_with_id)
            elif repeated := _repeated_parameter(scope["query_string"]):
                # Every parameter of this API takes one value: the framework would silently keep the last one, so
                # a policy such as ?witnesses=1 could be undone by whoever appends &witnesses=0.
                response = error_response(
                    Request(scope), 400, "INVALID_PARAMETER", f"the query gives the parameter {repeated!r} twice"
                )
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            status = CLIENT_CLOSED_REQUEST
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            template = _route_template(scope, self.routes)
            self.metrics.requests.labels(scope["method"], template, str(status)).inc()
            self.metrics.latency.labels(scope["method"], template).observe(elapsed)
            access_log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "party": scope.get("state", {}).get("party_id"),
                },
            )
