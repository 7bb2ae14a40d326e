"""One error hierarchy for the token endpoint (RFC 6749 §5.2) and protected resources (RFC 6750 §3).

Grants, client authentication and the security dependencies raise these; exactly one handler
(:func:`oauth2_error_handler`) turns them into responses, so every error body and header is
shaped in one place. A subclass usually sets only ``error`` and ``status_code``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

NO_STORE_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _quote(value: str) -> str:
    # RFC 6750 §3: auth-param values are quoted-strings; their characters exclude '"' and '\'.
    return '"' + value.replace("\\", "").replace('"', "'") + '"'


class OAuth2Error(Exception):
    error: ClassVar[str] = "server_error"
    status_code: ClassVar[int] = 400
    default_description: ClassVar[str] = ""

    def __init__(self, description: str | None = None) -> None:
        self.description = description if description is not None else self.default_description
        super().__init__(self.description or self.error)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body

    def headers(self) -> dict[str, str]:
        return dict(NO_STORE_HEADERS)


# --- RFC 6749 §5.2: token endpoint errors -------------------------------------------------


class InvalidRequestError(OAuth2Error):
    error = "invalid_request"


class InvalidClientError(OAuth2Error):
    """RFC 6749 §5.2: a 401 that names the authentication scheme the client should use."""

    error = "invalid_client"
    status_code = 401
    default_description = "Client authentication failed"

    def __init__(self, description: str | None = None, client_id: str | None = None) -> None:
        super().__init__(description)
        # The registered client that failed to authenticate, for the audit trail; None when
        # the id named no client (it is the caller's text, possibly a misplaced secret).
        self.client_id = client_id

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": 'Basic realm="authsvc"'}


class InvalidGrantError(OAuth2Error):
    error = "invalid_grant"


class InvalidCredentialsError(InvalidGrantError):
    """A wrong username or password: the failure the per-address limit counts (guessing).

    A spent or unknown refresh token is a plain InvalidGrantError: guessing 256 random bits is
    hopeless, and clients racing their own refresh must not be throttled for it.
    """

    # Set once the failure is counted against the caller's address (the password grant
    # counts before checking), so the throttle does not count it twice.
    counted = False


class UnauthorizedClientError(OAuth2Error):
    error = "unauthorized_client"


class UnsupportedGrantTypeError(OAuth2Error):
    error = "unsupported_grant_type"


class InvalidScopeError(OAuth2Error):
    error = "invalid_scope"


class UnsupportedTokenTypeError(OAuth2Error):
    """RFC 7009 §2.2.1: a token_type_hint we do not know."""

    error = "unsupported_token_type"


class TemporarilyUnavailableError(OAuth2Error):
    """The storage behind us is down: a 503 the client may retry, never a 500 or a hang."""

    error = "temporarily_unavailable"
    status_code = 503
    default_description = "The service is temporarily unavailable"
    retry_after = 5

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Retry-After": str(self.retry_after)}


class RequestTooLargeError(OAuth2Error):
    """A body over the configured cap: 413 (RFC 9110 §15.5.14), coded ``invalid_request``."""

    error = "invalid_request"
    status_code = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than {limit} bytes")

    def headers(self) -> dict[str, str]:
        # The rest of the body is never read: the connection cannot carry another request.
        return {**super().headers(), "Connection": "close"}


class RateLimitedError(OAuth2Error):
    """Too many failures from one address: 429 with Retry-After (RFC 6585 §4).

    RFC 6749 registers no code for this; ``invalid_request`` is the registered code closest in
    meaning, and the status and Retry-After say the rest.
    """

    error = "invalid_request"
    status_code = 429
    default_description = "Too many failed attempts from this address; retry later"

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Retry-After": str(self.retry_after)}


# --- RFC 6750 §3: protected resource errors -----------------------------------------------


class BearerError(OAuth2Error):
    """Errors that carry an RFC 6750 ``WWW-Authenticate: Bearer`` challenge."""

    status_code = 401

    def challenge_params(self) -> list[tuple[str, str]]:
        params = [("error", self.error)]
        if self.description:
            params.append(("error_description", self.description))
        return params

    def headers(self) -> dict[str, str]:
        params = ", ".join(f"{k}={_quote(v)}" for k, v in self.challenge_params())
        return {**super().headers(), "WWW-Authenticate": f"Bearer {params}".rstrip()}


class MissingTokenError(BearerError):
    """RFC 6750 §3.1: a request without credentials gets a bare challenge and no error code."""

    error = ""
    default_description = "Not authenticated"

    def challenge_params(self) -> list[tuple[str, str]]:
        return []

    def body(self) -> dict[str, Any]:
        return {"detail": self.description}


class InvalidBearerRequestError(BearerError):
    """RFC 6750 §3.1 invalid_request: a malformed request to a protected resource."""

    error = "invalid_request"
    status_code = 400


class InvalidTokenError(BearerError):
    error = "invalid_token"
    default_description = "The access token is invalid"


class InsufficientScopeError(BearerError):
    error = "insufficient_scope"
    status_code = 403
    default_description = "The access token does not grant the required scope"

    def __init__(self, required: list[str], description: str | None = None) -> None:
        super().__init__(description)
        self.required = required

    def challenge_params(self) -> list[tuple[str, str]]:
        return [*super().challenge_params(), ("scope", " ".join(self.required))]

    def body(self) -> dict[str, Any]:
        return {**super().body(), "scope": " ".join(self.required)}


def oauth2_error_response(exc: OAuth2Error) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers())


async def oauth2_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OAuth2Error)  # noqa: S101 - registered for OAuth2Error only
    return oauth2_error_response(exc)
