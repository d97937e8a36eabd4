"""Request bodies are parsed strictly by :func:`api.deps.get_json_body`, not by FastAPI, so their schemas are
published here: ``request_body(Model)`` documents a route's body and adds the model to the OpenAPI components."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from api.errors import ErrorResponse
from api.observability import UNLIMITED_PATHS

_BODY_MODELS: dict[str, type[BaseModel]] = {}

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "malformed body, or a document that breaks the DCSA schema or business rules",
        401: "no valid API key",
        403: "the caller's role never allows this",
        404: "no such eBL that the caller may see",
        409: "the current state does not allow this (the error code names the rule)",
        413: "the body is over the size limit",
        503: "a peer platform that must confirm the recipient did not answer; try again later",
    }.items()
}


def error(description: str) -> dict[str, Any]:
    """An ErrorResponse answer, where the shared description of its status in :data:`ERRORS` does not fit."""
    return {"model": ErrorResponse, "description": description}


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    _BODY_MODELS[model.__name__] = model
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, model in _BODY_MODELS.items():
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[name] = model_schema
            _document_parameter_errors(schema)
            _document_errors_as_json(schema)
            _document_rate_limit(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_parameter_errors(schema: dict[str, Any]) -> None:
    """A parameter FastAPI refuses is answered 400 ``INVALID_PARAMETER`` (api.errors), not FastAPI's 422: its
    generated 422 and the schemas only that answer used are replaced by the 400."""
    invalid = {
        "description": "a query or path parameter is not valid",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    generated = {"$ref": "#/components/schemas/HTTPValidationError"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema") == generated:
                del responses["422"]
                responses.setdefault("400", invalid)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)


def _document_errors_as_json(schema: dict[str, Any]) -> None:
    """An ErrorResponse is always JSON; FastAPI files it under the media type of the route's own answer (``text/plain``
    for the witness's cosignature line)."""
    error_schema = {"$ref": "#/components/schemas/ErrorResponse"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if any(media.get("schema") == error_schema for media in content.values()):
                    response["content"] = {"application/json": {"schema": error_schema}}


def _document_rate_limit(schema: dict[str, Any]) -> None:
    """Every operation but the scrape and the health check may answer 429 (api.observability)."""
    too_many = {
        "description": "over the rate limit of this API key (of this client address, without one); retry after "
        "the seconds in Retry-After",
        "headers": {"Retry-After": {"description": "whole seconds to wait", "schema": {"type": "integer"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    for path, operations in schema.get("paths", {}).items():
        if path in UNLIMITED_PATHS:
            continue
        for operation in operations.values():
            operation.setdefault("responses", {})["429"] = too_many
