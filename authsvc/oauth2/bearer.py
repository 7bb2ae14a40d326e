"""RFC 6750 §2: where a bearer token may come from, and what a malformed one means.

The gateway's dependencies, forward-auth and :mod:`authsvc.guard` all read tokens here, so a
header the gateway refuses is refused the same way by every service that trusts us.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from authsvc.oauth2.errors import (
    InsufficientScopeError,
    InvalidBearerRequestError,
    InvalidTokenError,
    MissingTokenError,
)
from authsvc.security.tokens import TokenValidationError

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
