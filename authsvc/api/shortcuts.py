"""Serve a few hot routes without FastAPI's per-request machinery.

The OAuth2 endpoints (token, introspection, revocation) take no FastAPI parameters at all: they
read their form body themselves (see ``oauth2.token_endpoint``). For them, dependency solving,
the route table walk and three layers of middleware ``send`` wrappers cost more than the work
itself: profiled, they were half of an introspection. ``RouteShortcuts`` sits in the app's
middleware stack, hands exactly those ``(method, path)`` pairs straight to the same endpoint
functions the routers declare (so OpenAPI still documents them, from the routers), and maps
their exceptions through the app's own exception handlers. Everything else, and any other
method on those paths, goes down the normal stack.

It runs inside Starlette's ``ServerErrorMiddleware``: an exception no handler claims still
becomes the app's 500 answer there.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from authsvc.api.request_log import ROUTE_TEMPLATE_KEY

Endpoint = Callable[[Request], Awaitable[Response]]
# Starlette's exception handler type: ours are all ``async def``, a plain one is called inline.
Handler = Callable[[Request, Any], Response | Awaitable[Response]]


class RouteShortcuts:
    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Mapping[tuple[str, str], Endpoint],
        handlers: Callable[[], Mapping[Any, Handler]],
    ) -> None:
        self.app = app
        self.routes = dict(routes)
        # Read when an exception happens, so handlers added after the middleware count.
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = None
        if scope["type"] == "http":
            endpoint = self.routes.get((scope["method"], scope["path"]))
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        scope[ROUTE_TEMPLATE_KEY] = scope["path"]
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            answer = handler(request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> Handler | None:
        handlers = self.handlers()
        for kind in type(exc).__mro__:
            if kind is Exception:
                # The catch-all belongs to ServerErrorMiddleware, which logs and answers 500.
                return None
            if kind in handlers:
                return handlers[kind]
        return None
