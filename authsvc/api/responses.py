"""The error answers each route can give, declared once for the OpenAPI document.

A client generated from ``/openapi.json`` (and the schemathesis run in CI) must find every
status we answer with, and its body shape: RFC 6749 §5.2 / RFC 6750 §3 bodies for OAuth2
errors, ``{"detail": ...}`` for the REST API's own, FastAPI's list for validation errors.
Routers pick the sets that apply to them; a 413 is added to every operation with a body by
:func:`document_body_limit`, because the body cap wraps the whole app.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

Responses = dict[int | str, dict[str, Any]]


class OAuth2ErrorBody(BaseModel):
    """RFC 6749 §5.2 and RFC 6750 §3 error body."""

    error: str
    error_description: str | None = None
    # insufficient_scope only: the scopes the route needs (RFC 6750 §3).
    scope: str | None = None


class DetailBody(BaseModel):
    """An error of the REST API itself (not found, conflict, wrong current password)."""

    detail: str


def _oauth2(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"model": OAuth2ErrorBody, "description": description}
    if retry_after:
        response["headers"] = {
            "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
        }
    return response


def _challenge(description: str) -> dict[str, Any]:
    return {
        "model": OAuth2ErrorBody | DetailBody,
        "description": description,
        "headers": {
            "WWW-Authenticate": {"description": "RFC 6750 challenge", "schema": {"type": "string"}}
        },
    }


def detail(description: str) -> dict[str, Any]:
    return {"model": DetailBody, "description": description}


UNAVAILABLE: Responses = {
    503: _oauth2("temporarily_unavailable: the database (or Redis) is down", retry_after=True)
}

# Routes behind a bearer token: a bare challenge without a token, invalid_token with a bad
# one, invalid_request for a malformed Authorization header.
BEARER: Responses = {
    400: _oauth2("invalid_request: a malformed Authorization header, or two of them"),
    401: _challenge('No token (`{"detail": "Not authenticated"}`), or invalid_token'),
    **UNAVAILABLE,
}

SCOPED: Responses = {
    **BEARER,
    403: {**_challenge("insufficient_scope"), "model": OAuth2ErrorBody},
}

# The OAuth2 endpoints (token, introspection, revocation).
OAUTH2_ENDPOINT: Responses = {
    400: _oauth2("RFC 6749 §5.2 error"),
    401: {
        **_oauth2("invalid_client"),
        "headers": {
            "WWW-Authenticate": {"description": "Basic challenge", "schema": {"type": "string"}}
        },
    },
    429: _oauth2("Too many failures from this address", retry_after=True),
    **UNAVAILABLE,
}

TOO_LARGE = _oauth2("invalid_request: the body is over AUTHSVC_MAX_BODY_BYTES")


def unprocessable(loc: tuple[str, ...], message: str) -> RequestValidationError:
    """A 422 in FastAPI's own shape, for a rule the models cannot check (a scope that does not
    exist, a client configuration that contradicts itself)."""
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": message}])


_SECRET_FIELD = re.compile(r"password|secret|token", re.IGNORECASE)


def _may_hold_a_secret(error: dict[str, Any]) -> bool:
    # A secret field's own value; or a whole object or list (a missing or misspelt field is
    # reported with the entire body as its input, password included).
    named = any(isinstance(part, str) and _SECRET_FIELD.search(part) for part in error["loc"])
    return named or isinstance(error.get("input"), dict | list)


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    """FastAPI's 422, except that no password, secret or token is echoed back: the body may
    reach a log or a screen the password never should. The location and message stay."""
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
    errors = []
    for error in exc.errors():
        if _may_hold_a_secret(error):
            error = {key: value for key, value in error.items() if key not in ("input", "ctx")}
        errors.append(error)
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def unknown_scopes(names: list[str]) -> RequestValidationError:
    return unprocessable(("body", "scopes"), f"Unknown scope: {' '.join(names)}")


def document_body_limit(app: FastAPI) -> None:
    """Generate the OpenAPI document with a 413 on every operation that takes a body."""

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            ref = {"$ref": "#/components/schemas/OAuth2ErrorBody"}
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    if "requestBody" in operation:
                        operation["responses"]["413"] = {
                            "description": TOO_LARGE["description"],
                            "content": {"application/json": {"schema": ref}},
                        }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
