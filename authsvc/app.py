"""The app factory. Nothing here runs at import: ``create_app`` builds everything per app."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from types import FrameType
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from authsvc import __version__
from authsvc.api.body_limit import BodyLimit
from authsvc.api.request_log import RequestLog
from authsvc.api.responses import document_body_limit, validation_error_handler
from authsvc.api.routes import (
    admin,
    admin_audit,
    admin_clients,
    console,
    forward_auth,
    health,
    token,
    users,
    wellknown,
)
from authsvc.api.routes import metrics as metrics_route
from authsvc.api.routes.docs import install_docs
from authsvc.api.security_headers import SecurityHeaders
from authsvc.api.shortcuts import RouteShortcuts
from authsvc.config import Settings, load_settings
from authsvc.context import AppContext, build_context
from authsvc.db.engine import POOL_SIZE
from authsvc.oauth2.client_auth import CONFIDENTIAL_AUTH_METHODS, SUPPORTED_AUTH_METHODS
from authsvc.oauth2.errors import OAuth2Error, TemporarilyUnavailableError, oauth2_error_handler
from authsvc.oauth2.grants import build_grants
from authsvc.oauth2.rfc7009 import RevocationEndpoint
from authsvc.oauth2.rfc7662 import IntrospectionEndpoint
from authsvc.oauth2.throttle import Throttle
from authsvc.oauth2.token_endpoint import TokenEndpoint
from authsvc.observability.metrics import Metrics
from authsvc.observability.tracing import Tracing
from authsvc.services.counters import SqlCounterStore
from authsvc.services.sessions import SessionService

logger = logging.getLogger("authsvc")


async def purge_forever(ctx: AppContext) -> None:
    """Drop expired refresh tokens, sessions and denylist entries, without an operator.

    Every replica runs this; the deletes are idempotent, so running it twice costs only time.
    """

    def purge_once() -> dict[str, int]:
        with ctx.sessionmaker() as session:
            service = SessionService(session, ctx.settings.refresh_token_ttl)
            counts = service.purge_expired(timedelta(seconds=ctx.settings.jwt_leeway))
        window_start = int(time.time()) - ctx.settings.rate_limit_window
        counts["rate_limit_counters"] = SqlCounterStore(ctx.sessionmaker).purge(window_start)
        return counts

    while True:
        await anyio.sleep(ctx.settings.purge_interval)
        try:
            counts = await run_in_threadpool(purge_once)
        except SQLAlchemyError as exc:
            logger.warning("purge of expired tokens failed: %s", exc)
        else:
            logger.info("purged expired tokens: %s", counts)


class RedactTokenQuery(logging.Filter):
    """Keeps ``?access_token=`` (WebSocket clients send tokens that way) out of access logs."""

    _PATTERN = re.compile(r"(access_token=)[^&\s]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._PATTERN.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def _redact_access_log() -> None:
    # uvicorn logs HTTP requests on uvicorn.access and WebSocket handshakes on uvicorn.error.
    for name in ("uvicorn.access", "uvicorn.error"):
        log = logging.getLogger(name)
        if not any(isinstance(existing, RedactTokenQuery) for existing in log.filters):
            log.addFilter(RedactTokenQuery())


def _watch_for_shutdown(ctx: AppContext) -> None:
    """Mark the context on SIGTERM/SIGINT, then let uvicorn's own handler run.

    /readyz answers 503 from that moment. On SIGTERM uvicorn's handler (which stops accepting
    connections and waits for in-flight requests) runs ``AUTHSVC_SHUTDOWN_DELAY`` seconds
    later, so a load balancer polling readiness takes the replica out before it stops
    listening. uvicorn installs its handlers before the lifespan starts, so we chain onto
    them. Only the main thread may set signal handlers (TestClient runs the lifespan in
    another thread).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    delay = ctx.settings.shutdown_delay
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def handler(number: int, frame: FrameType | None, previous: Any = previous) -> None:
            ctx.shutting_down = True
            if number == signal.SIGTERM and delay > 0:
                loop.call_soon_threadsafe(loop.call_later, delay, previous, number, None)
            else:
                previous(number, frame)

        signal.signal(signum, handler)


async def database_unavailable_handler(request: Request, exc: Exception) -> Response:
    # The driver's message can carry host names and user names; log it, do not send it.
    # Both PostgreSQL/SQLite and Redis errors come here; the type names which one it was.
    store = "database" if isinstance(exc, SQLAlchemyError) else "redis"
    logger.warning("%s unavailable on %s %s: %s", store, request.method, request.url.path, exc)
    return await oauth2_error_handler(request, TemporarilyUnavailableError())


async def server_error_handler(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {"error": "server_error", "error_description": "Internal server error"},
        status_code=500,
        headers={"Cache-Control": "no-store"},
    )


# The order /docs lists the routers in (the app includes them busiest first).
OPENAPI_TAGS = [
    {"name": "oauth2", "description": "Token, introspection (RFC 7662), revocation (RFC 7009)."},
    {"name": "discovery", "description": "Server metadata (RFC 8414) and signing keys (JWKS)."},
    {"name": "users", "description": "The signed-in user's own account."},
    {"name": "admin", "description": "Users, scopes, clients, sessions, audit (scope admin)."},
    {"name": "forward-auth", "description": "For reverse proxies: is this request allowed?"},
    {"name": "health", "description": "Liveness and readiness probes."},
    {"name": "operations", "description": "Prometheus metrics."},
]


class _AuthsvcApp(FastAPI):
    """The app, with the gateway's own middleware around all of Starlette's.

    Around the whole app (its ``__call__``), not inside ``build_middleware_stack``: a 500 from
    ServerErrorMiddleware is logged and carries its request id and the security headers too,
    and OpenTelemetry's FastAPI instrumentation, which rebuilds the stack Starlette builds,
    finds it as it expects.
    """

    settings: Settings
    metrics: Metrics
    _edge: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._edge is None:
            self._edge = self._build_edge(super().__call__)
        await self._edge(scope, receive, send)

    def _build_edge(self, inner: ASGIApp) -> ASGIApp:
        # CORS outside the body limit, so a browser can read a 413.
        app: ASGIApp = BodyLimit(inner, self.settings.max_body_bytes)
        origins = self.settings.cors_origin_list
        if origins:
            app = CORSMiddleware(
                app,
                allow_origins=origins,
                allow_methods=["GET", "POST", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
                # Bearer tokens travel in a header the script sets: no cookies, no credentials.
                allow_credentials=False,
                expose_headers=["WWW-Authenticate", "Retry-After", "X-Request-ID"],
                max_age=600,
            )
        return RequestLog(SecurityHeaders(app), metrics=self.metrics)


def create_app(settings: Settings | None = None) -> FastAPI:
    resolved = settings if settings is not None else load_settings()
    metrics = Metrics()
    tracing = Tracing.from_environment()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = build_context(resolved, metrics)
        if tracing is not None:
            tracing.instrument_engine(ctx.engine)
        throttle = Throttle(ctx.failure_limiter)
        ctx.token_endpoint = TokenEndpoint(build_grants(ctx), throttle)
        ctx.introspection_endpoint = IntrospectionEndpoint(ctx, throttle)
        ctx.revocation_endpoint = RevocationEndpoint(ctx, throttle)
        ctx.metadata_extra.update(
            {
                "introspection_endpoint": f"{resolved.issuer}/oauth2/introspect",
                "introspection_endpoint_auth_methods_supported": list(CONFIDENTIAL_AUTH_METHODS),
                "revocation_endpoint": f"{resolved.issuer}/oauth2/revoke",
                "revocation_endpoint_auth_methods_supported": list(SUPPORTED_AUTH_METHODS),
            }
        )
        app.state.ctx = ctx
        anyio.to_thread.current_default_thread_limiter().total_tokens = POOL_SIZE
        _watch_for_shutdown(ctx)
        ctx.audit.start()
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(purge_forever, ctx)
                try:
                    yield
                finally:
                    tasks.cancel_scope.cancel()
        finally:
            # After uvicorn finished the in-flight requests, so their events are all queued;
            # shielded, or a cancelled shutdown would skip the flush and leak connections.
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(ctx.audit.close)
            ctx.engine.dispose()
            ctx.hasher.close()
            metrics.process_exited()
            if tracing is not None:
                tracing.shutdown()
            if ctx.redis is not None:
                ctx.redis.close()

    app = _AuthsvcApp(
        title="authsvc",
        version=__version__,
        description="OAuth2/JWT authentication gateway. Use **Authorize** to sign in.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        swagger_ui_parameters={"persistAuthorization": False},
        openapi_tags=OPENAPI_TAGS,
    )
    app.settings = resolved
    app.metrics = metrics
    if tracing is not None:
        tracing.instrument_app(app)
    document_body_limit(app)
    _redact_access_log()
    app.add_exception_handler(OAuth2Error, oauth2_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(OperationalError, database_unavailable_handler)
    app.add_exception_handler(PoolTimeoutError, database_unavailable_handler)
    if resolved.redis_url is not None:
        # Imported only when configured: the client library is a tenth of a second to start.
        from redis.exceptions import RedisError

        app.add_exception_handler(RedisError, database_unavailable_handler)
    app.add_exception_handler(Exception, server_error_handler)
    # Busiest first: FastAPI finds a route by trying every route before it (a microsecond or
    # two each), so forward-auth, which a proxy calls on every request it lets through,
    # and the probes would otherwise pay for thirty admin and console routes. (The token
    # endpoints' POSTs are served past the router, see RouteShortcuts below; the order
    # /docs shows is OPENAPI_TAGS'.)
    for module in (
        forward_auth,
        health,
        users,
        token,
        wellknown,
        metrics_route,
        admin,
        admin_clients,
        admin_audit,
        console,
    ):
        app.include_router(module.router)
    # After the API, for the same reason: a page for people need not come first.
    install_docs(app)
    # Appended, not added: innermost of the app's middleware whenever any other is added, so
    # everything that wraps the app (CORS, headers, limits) wraps these routes too.
    app.user_middleware.append(
        Middleware(RouteShortcuts, routes=token.SHORTCUTS, handlers=lambda: app.exception_handlers)
    )
    return app
