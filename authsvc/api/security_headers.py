"""Headers every answer of the gateway carries, unless the route set its own.

- ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` everywhere.
- ``Cache-Control: no-store`` by default: most answers carry a token or user data, and a
  route whose answer may be cached (the JWKS, discovery, the docs' assets) says so itself.
- A strict ``Content-Security-Policy`` on everything but the interactive docs: the API
  answers JSON and never needs to run a script, load a resource or be framed. Swagger UI and
  ReDoc pages start themselves with inline scripts, so they keep the browser's defaults.

A pure ASGI middleware, outermost with the request log, so a 500 carries them too.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
_DEFAULTS = (
    (b"cache-control", b"no-store"),
    (b"content-security-policy", API_CSP.encode("ascii")),
)


def is_docs_path(path: str) -> bool:
    return path in ("/docs", "/redoc") or path.startswith("/docs/")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = is_docs_path(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in _ALWAYS if header[0] not in present)
                if not docs:
                    headers.extend(header for header in _DEFAULTS if header[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
