"""An OpenAPI document that says what the services answer: the original error body, never FastAPI's 422.

FastAPI documents a 422 with its own body for every operation with input, while the error handlers
answer 400 ``{"errors": [{"message", "field"}]}``; and it cannot know of the 401, 404, 405 and 413 the
handlers and limits give. ``install_openapi`` rewrites the generated document once, on first request:

- 400 wherever there is input to validate (parameters or a body), 413 wherever there is a body;
- 401 wherever an operation needs the session (its ``security``), 404 wherever a path names a record;
- 405 with ``Allow`` on every operation, for the path's other methods;
- a route adds its own (a 400 business rule, a 429) with ``responses=error_responses(...)``.
"""

from __future__ import annotations

import copy
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI

_REF = "#/components/schemas/ErrorBody"
_HEADERS: dict[int, dict[str, Any]] = {
    405: {
        "Allow": {"description": "The methods this path has", "required": True, "schema": {"type": "string"}}
    },
    429: {
        "Retry-After": {
            "description": "Seconds until the next attempt is counted",
            "required": True,
            "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
        }
    },
}
_DESCRIPTIONS = {
    400: "Invalid input (one entry per field), or a rule of the service refused the request",
    401: "Not signed in, or the record is someone else's",
    404: "No such record",
    405: "The path has no such method; Allow lists those it has",
    413: "The request body is larger than the service accepts",
    429: "Too many attempts; try again after Retry-After seconds",
}
_FASTAPI_SCHEMAS = ("HTTPValidationError", "ValidationError")


# The body of every error answer, as @sgtickets/common writes it (errors.ErrorDetail, in a list).
ERROR_BODY: dict[str, Any] = {
    "title": "ErrorBody",
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "minItems": 1,
            "items": {
                "title": "ErrorDetail",
                "type": "object",
                "required": ["message"],
                "properties": {
                    "message": {"type": "string", "description": "What is wrong"},
                    "field": {"type": "string", "description": "The input it is about, as a.b[0].c"},
                },
            },
        }
    },
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that answers these error statuses with the original body."""
    return {status: _response(status) for status in statuses}


def _response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
        "content": {"application/json": {"schema": {"$ref": _REF}}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the document rewritten as the module docstring says."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _rewritten(generate())
        return app.openapi_schema

    # FastAPI's documented way to extend the document.
    app.openapi = openapi  # type: ignore[method-assign]


def _rewritten(document: dict[str, Any]) -> dict[str, Any]:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_SCHEMAS:
        schemas.pop(name, None)
    schemas["ErrorBody"] = copy.deepcopy(ERROR_BODY)
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            _document_errors(operation, names_a_record="{" in path)
    return document


def _document_errors(operation: dict[str, Any], *, names_a_record: bool) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.pop("422", None)
    statuses = [405]
    if operation.get("parameters") or "requestBody" in operation:
        statuses.append(400)
    if "requestBody" in operation:
        statuses.append(413)
    if operation.get("security"):
        statuses.append(401)
    if names_a_record:
        statuses.append(404)
    for status in statuses:
        responses.setdefault(str(status), _response(status))
