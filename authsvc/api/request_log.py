"""One log line per request, and its request id echoed back.

Outermost in the app (outside Starlette's ``ServerErrorMiddleware``), so a 500 is logged and
carries its request id too. The id is the caller's ``X-Request-ID`` when it is a sane token
(a proxy or a client correlating its own logs), a new random one otherwise; it is only ever
an identifier, so anything that could forge a log line or carry a secret is replaced. The
route is the template (``/admin/users/{user_id}``), never the raw path: ids and tokens in
paths stay out of logs, and a log index keyed by route stays small.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authsvc.observability import request_context
from authsvc.observability.logs import ACCESS_LOGGER
from authsvc.observability.metrics import Metrics

REQUEST_ID_HEADER = b"x-request-id"
PROCESS_TIME_HEADER = b"x-process-time"
# Printable, no spaces or quotes: safe inside a text log line and a JSON string alike.
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")
# Where routes served outside Starlette's router (``api.shortcuts``) leave their template.
ROUTE_TEMPLATE_KEY = "authsvc.route"


def incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            return value.decode("ascii") if _SANE_REQUEST_ID.fullmatch(value) else None
    return None


def route_template(scope: Scope) -> str | None:
    route = scope.get("route")
    if route is not None:
        path: str | None = getattr(route, "path", None)
        return path
    template: str | None = scope.get(ROUTE_TEMPLATE_KEY)
    return template


class RequestLog:
    """Also where the request metrics are counted: the same route, status and duration."""

    def __init__(
        self, app: ASGIApp, logger: logging.Logger | None = None, metrics: Metrics | None = None
    ) -> None:
        self.app = app
        self.logger = logger if logger is not None else logging.getLogger(ACCESS_LOGGER)
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = incoming_request_id(scope["headers"]) or secrets.token_hex(16)
        info = request_context.begin(request_id)
        id_header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        status = 500

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed = f"{time.perf_counter() - started:.6f}".encode("ascii")
                headers = [*message.get("headers", ()), id_header, (PROCESS_TIME_HEADER, elapsed)]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_ids)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            if self.metrics is not None:
                self.metrics.observe_request(route, scope["method"], status, seconds)
            if self.logger.isEnabledFor(logging.INFO):
                fields: dict[str, Any] = {
                    "request_id": request_id,
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "client_id": info.client_id,
                    "sub": info.subject,
                }
                self.logger.info("request", extra={"http": fields})
