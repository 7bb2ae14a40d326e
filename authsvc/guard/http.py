"""HTTP to the issuer: its RFC 8414 metadata and JSON documents, failures made uniform."""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import httpx

MAX_DOCUMENT_BYTES = 1024 * 1024


class OwnedClient:
    """An httpx client, closed by us only if we made it."""

    def __init__(self, http: httpx.AsyncClient | None, timeout: float) -> None:
        self.owned = http is None
        self.http = http if http is not None else httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        if self.owned:
            await self.http.aclose()


class AsyncCloseable:
    """``async with validator:`` closes it (its HTTP client, background work) on the way out."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class IssuerUnavailableError(Exception):
    """The issuer's metadata or keys could not be fetched, and no usable copy is cached."""


def metadata_url(issuer: str) -> str:
    """RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path."""
    parts = urlsplit(issuer)
    path = "/.well-known/oauth-authorization-server" + parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


_NOT_JSON = object()


async def request_json(
    http: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> tuple[int, Any, httpx.Headers]:
    """Status, decoded JSON body (``_NOT_JSON`` if it is not JSON) and headers of a request.

    The body is read streaming and refused past 1 MiB; a transport failure or an oversized
    body becomes :class:`IssuerUnavailableError`.
    """
    headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
    try:
        async with http.stream(method, url, headers=headers, **kwargs) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise IssuerUnavailableError(
                        f"{method} {url} answered more than {MAX_DOCUMENT_BYTES} bytes"
                    )
    except httpx.HTTPError as exc:
        raise IssuerUnavailableError(f"{method} {url} failed: {type(exc).__name__}") from None
    try:
        document: Any = json.loads(body)
    except (ValueError, RecursionError):
        document = _NOT_JSON
    return response.status_code, document, response.headers


async def fetch_json(http: httpx.AsyncClient, url: str) -> tuple[dict[str, Any], httpx.Headers]:
    """GET a JSON object; any failure becomes :class:`IssuerUnavailableError`."""
    status, document, headers = await request_json(http, "GET", url)
    if status != 200:
        raise IssuerUnavailableError(f"GET {url} answered {status}")
    if not isinstance(document, dict):
        raise IssuerUnavailableError(f"GET {url} answered something that is not a JSON object")
    return document, headers


async def discover(http: httpx.AsyncClient, issuer: str) -> dict[str, Any]:
    """The issuer's RFC 8414 metadata, checked to be about this issuer (§3.3)."""
    url = metadata_url(issuer)
    document, _ = await fetch_json(http, url)
    if document.get("issuer") != issuer:
        # §3.3: a mismatch MUST NOT be used; it may be another server's metadata.
        raise IssuerUnavailableError(f"{url} describes issuer {document.get('issuer')!r}")
    return document
