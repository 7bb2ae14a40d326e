"""RFC 6750 §2: where a bearer token may come from, and what a malformed one means.

The gateway's dependencies, forward-auth and :mod:`authsvc.guard` all read tokens here, so a
header the gateway refuses is refused the same way by every service that trusts us.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from starlette.exceptions import WebSocketException
from starlette.requests import HTTPConnection
from starlette.status import WS_1008_POLICY_VIOLATION, WS_1013_TRY_AGAIN_LATER
from starlette.websockets import WebSocket

from authsvc.oauth2.errors import (
    InsufficientScopeError,
    InvalidBearerRequestError,
    InvalidTokenError,
    MissingTokenError,
    OAuth2Error,
    TemporarilyUnavailableError,
)
from authsvc.security.tokens import TokenValidationError

QUERY_PARAMETER = "access_token"
# RFC 6750 §2.1 b64token.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def token_from_authorization(headers: list[str]) -> str | None:
    """The token of the one ``Authorization: Bearer`` header, or None when there is none.

    Another scheme counts as no token (RFC 6750 §3.1: the client did not try Bearer, so the
    answer is a bare challenge without an error code).
    """
    if not headers:
        return None
    if len(headers) > 1:
        raise InvalidBearerRequestError("More than one Authorization header")
    scheme, _, token = headers[0].partition(" ")
    if scheme.lower() != "bearer":
        return None
    return checked_token(token.strip(" "))


def checked_token(token: str) -> str:
    """A token from any carrier (header, query parameter, cookie) must be a b64token."""
    if not token or not _B64TOKEN.fullmatch(token):
        raise InvalidTokenError()
    return token


def token_from_websocket(websocket: HTTPConnection) -> str:
    """A WebSocket's token: ``Authorization`` or, for browsers, ``?access_token=`` (§2.3).

    Browsers cannot set headers on a WebSocket, hence the query parameter; keep such URLs
    out of access logs.
    """
    token = token_from_authorization(websocket.headers.getlist("authorization"))
    query_tokens = websocket.query_params.getlist(QUERY_PARAMETER)
    if query_tokens and (token is not None or len(query_tokens) > 1):
        # RFC 6750 §2: a client MUST NOT use more than one method to send the token.
        raise InvalidBearerRequestError("More than one access token")
    if query_tokens:
        token = checked_token(query_tokens[0])
    return require_token(token)


async def refuse_websocket(websocket: WebSocket, exc: OAuth2Error) -> WebSocketException:
    """Accept, so the close that follows carries a code: 1008 (policy violation), or 1013
    (try again later) when we could not check. A close before accepting would reach the
    client as a bare HTTP 403. Raise what this returns."""
    code = (
        WS_1013_TRY_AGAIN_LATER
        if isinstance(exc, TemporarilyUnavailableError)
        else WS_1008_POLICY_VIOLATION
    )
    await websocket.accept()
    return WebSocketException(code=code, reason=exc.error or "not_authenticated")


def require_token(token: str | None) -> str:
    if token is None:
        raise MissingTokenError()
    return token


def check_scopes(required: Sequence[str], held: Collection[str]) -> None:
    """RFC 6750 §3.1 insufficient_scope names every scope the resource needs, not the gap."""
    if any(scope not in held for scope in required):
        raise InsufficientScopeError(list(dict.fromkeys(required)))


def refused(exc: TokenValidationError) -> InvalidTokenError:
    """The challenge for a token that failed verification; only expiry is worth telling."""
    return InvalidTokenError("The access token expired" if exc.expired else None)
