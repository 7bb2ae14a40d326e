"""The token endpoint (RFC 6749 §3.2): parse the request strictly, then dispatch by grant_type.

We read the body ourselves instead of declaring FastAPI ``Form`` fields: a missing, repeated or
undecodable parameter must be an RFC 6749 ``invalid_request`` (400), not FastAPI's 422, and
repeated parameters are invisible once a framework has collapsed them into a dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, Request

from authsvc.oauth2.errors import (
    InvalidRequestError,
    RequestTooLargeError,
    UnsupportedGrantTypeError,
)
from authsvc.oauth2.throttle import Throttle
from authsvc.security.network import Caller

# Far below AUTHSVC_MAX_BODY_BYTES: no token request needs more, and the form is parsed whole.
MAX_BODY_BYTES = 16 * 1024
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
FORM_MEDIA_TYPE = FORM_CONTENT_TYPE.encode()


@dataclass(frozen=True)
class TokenRequest:
    params: Mapping[str, str]
    authorization: str | None
    caller: Caller

    def get(self, name: str) -> str | None:
        return self.params.get(name)

    def require(self, name: str) -> str:
        value = self.params.get(name)
        if value is None:
            raise InvalidRequestError(f"Missing parameter: {name}")
        return value


class Grant(Protocol):
    GRANT_TYPE: str

    async def issue(self, request: TokenRequest) -> dict[str, Any]: ...


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise RequestTooLargeError(MAX_BODY_BYTES)  # before reading any of it
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise RequestTooLargeError(MAX_BODY_BYTES)
            chunks.append(chunk)
    except ClientDisconnect:
        raise InvalidRequestError("Incomplete request body") from None
    return b"".join(chunks)


def parse_form(body: bytes) -> dict[str, str]:
    """Decode an application/x-www-form-urlencoded body (RFC 6749 Appendix B) strictly."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequestError("The request body is not valid form-encoded UTF-8") from None
    params: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        # RFC 6749 §3.2: parameters MUST NOT be included more than once.
        if name in seen:
            raise InvalidRequestError(f"Parameter repeated: {name}")
        seen.add(name)
        # RFC 6749 §3.1: parameters sent without a value are treated as omitted.
        if value != "":
            params[name] = value
    return params


async def read_token_request(request: Request, caller: Caller) -> TokenRequest:
    if request.scope.get("query_string"):
        # RFC 6749 §3.2 requires POST with a form body; credentials in a URL end up in logs.
        raise InvalidRequestError("Parameters must be sent in the request body, not the URL")
    # One pass over the raw headers (ASGI lowercases their names) instead of two lookups.
    content_type: bytes | None = None
    authorization: list[bytes] = []
    for name, value in request.scope["headers"]:
        if name == b"content-type" and content_type is None:
            content_type = value
        elif name == b"authorization":
            authorization.append(value)
    media_type = (content_type or b"").split(b";", 1)[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        raise InvalidRequestError(f"The request body must be {FORM_CONTENT_TYPE}")
    if len(authorization) > 1:
        raise InvalidRequestError("More than one Authorization header")
    params = parse_form(await _read_body(request))
    return TokenRequest(
        params=params,
        authorization=authorization[0].decode("latin-1") if authorization else None,
        caller=caller,
    )


class TokenEndpoint:
    def __init__(self, grants: list[Grant], throttle: Throttle) -> None:
        self.grants = {grant.GRANT_TYPE: grant for grant in grants}
        self.throttle = throttle

    @property
    def grant_types(self) -> list[str]:
        return list(self.grants)

    async def handle(self, request: Request, caller: Caller) -> dict[str, Any]:
        return await self.throttle.guard(caller, lambda: self._handle(request, caller))

    async def _handle(self, request: Request, caller: Caller) -> dict[str, Any]:
        token_request = await read_token_request(request, caller)
        grant_type = token_request.require("grant_type")
        grant = self.grants.get(grant_type)
        if grant is None:
            raise UnsupportedGrantTypeError(f"Unsupported grant_type: {grant_type[:64]}")
        return await grant.issue(token_request)
