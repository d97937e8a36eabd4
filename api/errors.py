"""One handler maps the error tree of :mod:`ebl.errors` (and FastAPI's own errors) to DCSA ``ErrorResponse``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from ebl.errors import EblError, ErrorDetail, WitnessSizeMismatch
from ebl.logs import REQUEST_ID

logger = logging.getLogger("ebl.api")

REQUEST_ID_HEADER = "X-Request-ID"


class DetailedError(BaseModel):
    errorCodeText: str
    errorCodeMessage: str
    property: str | None = None
    jsonPath: str | None = None


class ErrorResponse(BaseModel):
    """DCSA ``ErrorResponse`` (API Design Principles 2.0)."""

    httpMethod: str
    requestUri: str
    statusCode: int
    statusCodeText: str
    statusCodeMessage: str | None = None
    errorDateTime: str
    errors: list[DetailedError]


def error_response(
    request: Request, status: int, code: str, message: str, details: tuple[ErrorDetail, ...] = ()
) -> JSONResponse:
    errors = [
        DetailedError(
            errorCodeText=detail.code or code,
            errorCodeMessage=detail.message[:5000],
            property=detail.property,
            jsonPath=detail.json_path,
        )
        for detail in details
    ] or [DetailedError(errorCodeText=code, errorCodeMessage=message[:5000])]
    body = ErrorResponse(
        httpMethod=request.method,
        requestUri=request.url.path,
        statusCode=status,
        statusCodeText=HTTPStatus(status).phrase,
        statusCodeMessage=message[:5000],
        errorDateTime=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        errors=errors,
    )
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def ebl_error_response(request: Request, exc: EblError) -> JSONResponse:
    return error_response(request, exc.status_code, exc.code, exc.message, exc.details)


def routes_at(routes: Sequence[Route], path: str) -> list[Route]:
    """The routes whose path template matches ``path``, whatever their methods."""
    return [route for route in routes if route.path_regex.match(path)]


def _allowed_methods(routes: Sequence[Route], path: str) -> str:
    """The ``Allow`` of a 405: the methods of every route of the path. Starlette's names only the first route that
    matched the path, and this API has paths with one route per method (``GET`` and ``POST /v1/ebls``)."""
    return ", ".join(sorted({method for route in routes_at(routes, path) for method in route.methods or ()}))


def install(app: FastAPI, routes: Sequence[Route]) -> None:
    """Answer every error of ``app`` as a DCSA ErrorResponse; ``routes`` are all the app's routes, for 405s."""

    @app.exception_handler(EblError)
    async def _ebl_error(request: Request, exc: EblError) -> JSONResponse:
        return ebl_error_response(request, exc)

    @app.exception_handler(WitnessSizeMismatch)
    async def _witness_size(_request: Request, exc: WitnessSizeMismatch) -> PlainTextResponse:
        # C2SP tlog-witness fixes this answer: the witness's latest size, as text/x.tlog.size.
        return PlainTextResponse(f"{exc.latest_size}\n", status_code=409, media_type="text/x.tlog.size")

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = tuple(
            ErrorDetail(
                message=str(error.get("msg", "invalid")),
                code="INVALID_PARAMETER",
                property=str(error["loc"][-1]) if error.get("loc") else None,
            )
            for error in exc.errors()
        )
        return error_response(request, 400, "INVALID_PARAMETER", "a request parameter is not valid", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTPStatus(exc.status_code).phrase.upper().replace(" ", "_")
        response = error_response(request, exc.status_code, code, str(exc.detail))
        if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
            response.headers["Allow"] = _allowed_methods(routes, request.url.path)
        return response

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        response = error_response(request, 500, "INTERNAL_ERROR", "the node failed to handle this request")
        # Answered outside api.observability, which names every other answer: the id is the one to report.
        request_id = REQUEST_ID.get()
        if request_id is not None:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response
