"""Operations: the per-API-key rate limit, request ids and JSON logs without secrets, Prometheus metrics, and a
graceful shutdown that lets requests in flight finish."""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from ebl.logs import JsonFormatter, shown_url
from ebl.service import Node
from tests.conftest import CARRIER, CQ_CUSTOMS, DATABASES, SHIPPER, Api, assert_error, load_sample, node_settings
from tests.nodeproc import NodeProcess


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Api]:
    # A token every 1000 s: within a test, nothing refills, whatever the machine's speed.
    node = Node.open(node_settings(tmp_path, rate_limit_per_second=0.001, rate_limit_burst=3))
    with TestClient(create_app(node), raise_server_exceptions=False) as client:
        yield Api(client)
    node.close()


def test_an_api_key_over_its_limit_gets_429_with_retry_after(limited: Api) -> None:
    answers = [limited.get(SHIPPER, "/v1/parties") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    refused = limited.get(SHIPPER, "/v1/parties")
    assert_error(refused, 429, "RATE_LIMITED")
    assert int(refused.headers["Retry-After"]) >= 1
    # Another key has a bucket of its own; health checks and scrapes are never limited.
    assert limited.get(CARRIER, "/v1/parties").status_code == 200
    assert all(limited.client.get("/health").status_code == 200 for _ in range(5))
    # Counted under the route that was refused, as every answer is.
    refused_route = (("method", "GET"), ("route", "/v1/parties"), ("status", "429"))
    assert _metrics(limited.client)[("ebl_http_requests_total", refused_route)] == 1


def test_one_api_key_has_one_bucket_however_its_header_is_spelt(limited: Api) -> None:
    key = limited.parties[SHIPPER]["apiKey"]
    spellings = [f"Bearer {key}", f"bearer {key}", f"BEARER  {key}", f"bEaReR {key} "]
    answers = [limited.client.get("/v1/parties", headers={"Authorization": spelling}) for spelling in spellings]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    assert_error(answers[3], 429, "RATE_LIMITED")


def test_a_client_inventing_api_keys_is_limited_by_its_address(limited: Api) -> None:
    # Three tokens a bucket. The address has spent one on the fixture's read of /sandbox/parties, and a key's first use
    # (the node has not seen it authenticated yet) spends one of the address's too.
    assert limited.get(SHIPPER, "/v1/parties").status_code == 200
    invented = [limited.client.get("/v1/parties", headers={"Authorization": f"Bearer made-up-{n}"}) for n in range(5)]
    assert [a.status_code for a in invented] == [401, 429, 429, 429, 429]
    assert_error(invented[1], 429, "RATE_LIMITED")
    # The address is spent; a key the node knows still has the rest of its own bucket.
    assert [limited.get(SHIPPER, "/v1/parties").status_code for _ in range(3)] == [200, 200, 429]


def test_the_openapi_document_tells_clients_about_the_rate_limit(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    refused = paths["/v1/ebls"]["post"]["responses"]["429"]
    assert "Retry-After" in refused["headers"]
    assert "429" not in paths["/health"]["get"]["responses"]


def test_requests_carry_an_id_the_client_may_choose(api: Api) -> None:
    chosen = api.client.get("/health", headers={"X-Request-ID": "trace-42.a"})
    assert chosen.headers["X-Request-ID"] == "trace-42.a"
    made_up = api.client.get("/health", headers={"X-Request-ID": "not a sane id"})
    generated = api.client.get("/health")
    assert made_up.headers["X-Request-ID"] != "not a sane id"
    assert len({made_up.headers["X-Request-ID"], generated.headers["X-Request-ID"]}) == 2


def _json_lines(logger_name: str) -> Iterator[io.StringIO]:
    """What ``logger_name`` writes while the test runs, as the server writes it: JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)


@pytest.fixture
def access_log() -> Iterator[io.StringIO]:
    yield from _json_lines("ebl.access")


@pytest.fixture
def api_log() -> Iterator[io.StringIO]:
    yield from _json_lines("ebl.api")


def test_each_request_is_one_json_log_line_with_its_id_and_no_secret(
    api: Api, access_log: io.StringIO, sample: dict[str, Any]
) -> None:
    api_key = api.parties[CARRIER]["apiKey"]
    response = api.client.post(
        "/v1/ebls",
        json={"transportDocument": sample, "issueTo": api.issue_to(SHIPPER)},
        headers={**api.headers(CARRIER), "X-Request-ID": "issue-1"},
    )
    assert response.status_code == 201
    lines = [json.loads(line) for line in access_log.getvalue().splitlines()]
    entry = next(line for line in lines if line.get("request_id") == "issue-1")
    assert entry | {"time": None, "duration_ms": None} == {
        "time": None,
        "level": "INFO",
        "logger": "ebl.access",
        "process": os.getpid(),
        "message": "request",
        "request_id": "issue-1",
        "method": "POST",
        "path": "/v1/ebls",
        "status": 201,
        "duration_ms": None,
        "party": api.parties[CARRIER]["id"],
    }
    assert api_key not in access_log.getvalue()


def test_an_unexpected_failure_is_a_500_that_names_the_request(
    api: Api, monkeypatch: pytest.MonkeyPatch, api_log: io.StringIO
) -> None:
    def fail() -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(api.client.app.state.node, "directory", fail)  # type: ignore[attr-defined]
    answer = api.client.get("/v1/parties", headers={**api.headers(SHIPPER), "X-Request-ID": "bug-1"})
    assert_error(answer, 500, "INTERNAL_ERROR")
    assert answer.headers["X-Request-ID"] == "bug-1"
    logged = [json.loads(line) for line in api_log.getvalue().splitlines()]
    assert [(line["level"], line["request_id"]) for line in logged] == [("ERROR", "bug-1")]
    assert "RuntimeError: a bug" in logged[0]["exception"]


def test_a_client_that_leaves_mid_body_is_logged_as_gone_not_as_a_failure(
    api: Api, access_log: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    app = api.client.app
    messages = iter([{"type": "http.request", "body": b'{"bund', "more_body": True}, {"type": "http.disconnect"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/verify",
        "raw_path": b"/v1/verify",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100"), (b"x-request-id", b"gone-1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
        "app": app,
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert sent == []  # nobody is left to answer
    entry = next(json.loads(line) for line in access_log.getvalue().splitlines() if "gone-1" in line)
    assert entry["status"] == 499
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    route = (("method", "POST"), ("route", "/v1/verify"))
    metrics = _metrics(api.client)
    assert metrics[("ebl_http_requests_total", (*route, ("status", "499")))] == 1
    assert ("ebl_http_requests_total", (*route, ("status", "500"))) not in metrics


def test_a_parameter_given_twice_is_refused_not_read_as_its_last_value(api: Api) -> None:
    # A gateway that adds ?witnesses=1 to enforce a policy must not be undone by a client's own &witnesses=0.
    for query in ("witnesses=1&witnesses=0", "witnesses=0&witnesses=1", "witnesses=1&witnesses"):
        body = assert_error(api.client.post(f"/v1/verify?{query}", json={}), 400, "INVALID_PARAMETER")
        assert "'witnesses' twice" in body["statusCodeMessage"]
    assert_error(api.get(SHIPPER, "/v1/ebls?limit=5&limit=6"), 400, "INVALID_PARAMETER")
    assert api.get(SHIPPER, "/v1/ebls?limit=5").status_code == 200


def test_no_parameter_or_body_string_may_hold_nul(api: Api, sample: dict[str, Any]) -> None:
    # PostgreSQL cannot store U+0000 in text; both databases refuse it alike, as a 400, never a 500.
    reference = sample["transportDocumentReference"]
    assert_error(api.get(SHIPPER, "/v1/ebls/A%00B"), 400, "INVALID_PARAMETER")
    assert_error(api.get(SHIPPER, "/v1/ebls?cursor=%00"), 400, "INVALID_PARAMETER")
    assert_error(api.client.put("/v3/envelopes/a%00b/finish-transfer"), 400, "INVALID_PARAMETER")
    nul = copy.deepcopy(sample)
    nul["transportDocumentReference"] = "PG\x00NUL"
    assert_error(api.issue(nul), 400)
    assert_error(
        api.client.post("/v3/receiver-validation", json={"partyCode": "9\x00", "codeListProvider": "ZZZ"}), 400
    )
    # Inside base64url, where the body's check cannot see it: a JWS header's kid, looked up among the keys.
    header = base64.urlsafe_b64encode(b'{"alg":"EdDSA","kid":"\\u0000"}').rstrip(b"=").decode()
    manifest = f"{header}.e30.AAAA"
    assert_error(api.issue(sample, issuanceManifestSignedContent=manifest), 400, "INVALID_SIGNATURE")
    # A backslash followed by "u0000" is text like any other.
    escaped = copy.deepcopy(sample)
    escaped["transportDocumentReference"] = reference + "X"
    escaped["termsAndConditions"] += " \\u0000"
    issued = api.issue(escaped)
    assert issued.status_code == 201, issued.text
    assert issued.json()["transportDocument"]["termsAndConditions"].endswith(" \\u0000")


def _metrics(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_count_requests_by_route_and_show_ebls_and_log_size(api: Api, sample: dict[str, Any]) -> None:
    assert _metrics(api.client)[("ebl_ebls", ())] == 0
    assert api.issue(sample).status_code == 201
    reference = sample["transportDocumentReference"]
    assert api.get(CQ_CUSTOMS, f"/v1/ebls/{reference}").status_code == 200
    assert api.get(CQ_CUSTOMS, "/v1/ebls/NO-SUCH-REF").status_code == 404
    metrics = _metrics(api.client)
    route = (("method", "GET"), ("route", "/v1/ebls/{reference}"))
    assert metrics[("ebl_http_requests_total", (*route, ("status", "200")))] == 1
    assert metrics[("ebl_http_requests_total", (*route, ("status", "404")))] == 1
    assert metrics[("ebl_http_requests_total", (("method", "POST"), ("route", "/v1/ebls"), ("status", "201")))] == 1
    assert metrics[("ebl_http_request_duration_seconds_count", route)] == 2
    assert metrics[("ebl_ebls", ())] == 1
    assert metrics[("ebl_log_size", ())] == 1
    assert metrics[("ebl_http_requests_in_flight", ())] == 1  # the scrape itself
    # Later scrapes count only what was issued since, and count it once.
    second = copy.deepcopy(sample)
    second["transportDocumentReference"] = reference + "2"
    assert api.issue(second).status_code == 201
    assert _metrics(api.client)[("ebl_ebls", ())] == 2
    assert _metrics(api.client)[("ebl_ebls", ())] == 2
    assert _metrics(api.client)[("ebl_log_size", ())] == 2


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://alice:s3cret@[::1]:8001/v1/log/witness?token=t0ken", "http://[::1]:8001/v1/log/witness"),
        ("https://sgsb.example/v1/log/witness", "https://sgsb.example/v1/log/witness"),
        ("http://alice:s3cret@sgsb.example:99999/", "(a URL that does not parse)"),
    ],
)
def test_a_logged_url_shows_no_password_and_no_query(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_metrics_label_the_framework_pages_by_their_path(api: Api) -> None:
    assert api.client.get("/openapi.json").status_code == 200
    assert api.client.get("/docs").status_code == 200
    assert api.client.get("/no/such/page").status_code == 404
    metrics = _metrics(api.client)
    for path, status in (("/openapi.json", "200"), ("/docs", "200")):
        assert metrics[("ebl_http_requests_total", (("method", "GET"), ("route", path), ("status", status)))] == 1
    unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert metrics[("ebl_http_requests_total", unmatched)] == 1


def test_a_stopping_server_finishes_the_requests_in_flight(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, DATABASES.url(tmp_path))
    node.start()
    parties = {p["partyName"]: p for p in httpx.get(f"{node.url}/sandbox/parties").json()}
    shipper = parties[SHIPPER]
    body = json.dumps(
        {
            "transportDocument": load_sample(),
            "issueTo": {
                "partyName": shipper["partyName"],
                "sendToPlatform": shipper["eblPlatform"],
                "identifyingCodes": shipper["identifyingCodes"],
            },
        }
    ).encode()
    release = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield body[:100]
        assert release.wait(timeout=60)
        yield body[100:]

    answers: list[httpx.Response] = []
    exit_status: list[int | None] = []

    def send() -> None:
        headers = {"Authorization": f"Bearer {parties[CARRIER]['apiKey']}", "Content-Type": "application/json"}
        answers.append(httpx.post(f"{node.url}/v1/ebls", content=slow_body(), headers=headers, timeout=60))

    sender = threading.Thread(target=send)
    sender.start()
    try:
        # The request is in flight once the server counts it (besides the scrape that asks).
        deadline = time.monotonic() + 30
        while _in_flight(node.url) < 2:
            assert time.monotonic() < deadline, "the slow request never reached the server"
        stopping = threading.Thread(target=lambda: exit_status.append(node.stop()))
        stopping.start()
        # The server stops accepting new connections before it lets the slow request finish.
        deadline = time.monotonic() + 30
        while _accepts(node.url):
            assert time.monotonic() < deadline, "the server kept accepting connections after SIGTERM"
        release.set()
        sender.join(timeout=60)
        stopping.join(timeout=60)
    finally:
        release.set()
        node.stop()
    [response] = answers
    assert response.status_code == 201, response.text
    # uvicorn ends by re-raising the signal it stopped for, once everything is shut down.
    assert exit_status in ([0], [-signal.SIGTERM]), node.log
    assert "Application shutdown complete." in node.log
    assert all(json.loads(line) for line in node.log.splitlines() if line.strip())  # every log line is JSON


def _in_flight(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name.endswith("flight"))


def _accepts(url: str) -> bool:
    try:
        httpx.get(f"{url}/health", timeout=2)
    except httpx.TransportError:
        return False
    return True
