"""The app factory. Nothing here runs at import: ``create_app`` builds everything per app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from authsvc import __version__
from authsvc.api.routes import admin, health, token, users, wellknown
from authsvc.api.routes.docs import install_docs
from authsvc.config import Settings, load_settings
from authsvc.context import build_context
from authsvc.oauth2.errors import OAuth2Error, TemporarilyUnavailableError, oauth2_error_handler
from authsvc.oauth2.grants import build_grants
from authsvc.oauth2.token_endpoint import TokenEndpoint

logger = logging.getLogger("authsvc")


async def database_unavailable_handler(request: Request, exc: Exception) -> Response:
    # The driver's message can carry host names and user names; log it, do not send it.
    logger.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return await oauth2_error_handler(request, TemporarilyUnavailableError())


async def server_error_handler(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {"error": "server_error", "error_description": "Internal server error"},
        status_code=500,
        headers={"Cache-Control": "no-store"},
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    resolved = settings if settings is not None else load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = build_context(resolved)
        ctx.token_endpoint = TokenEndpoint(build_grants(ctx))
        app.state.ctx = ctx
        try:
            yield
        finally:
            ctx.engine.dispose()

    app = FastAPI(
        title="authsvc",
        version=__version__,
        description="OAuth2/JWT authentication gateway. Use **Authorize** to sign in.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        swagger_ui_parameters={"persistAuthorization": False},
    )
    install_docs(app)
    app.add_exception_handler(OAuth2Error, oauth2_error_handler)
    app.add_exception_handler(OperationalError, database_unavailable_handler)
    app.add_exception_handler(PoolTimeoutError, database_unavailable_handler)
    app.add_exception_handler(Exception, server_error_handler)
    for module in (token, wellknown, users, admin, health):
        app.include_router(module.router)
    return app
