"""A separate FastAPI service that trusts authsvc's tokens through ``authsvc.guard``.

It has no database, no keys and no settings of the gateway: only the gateway's issuer URL.
Run it beside a gateway on port 8000::

    DOWNSTREAM_ISSUER=http://127.0.0.1:8000 uvicorn --no-access-log \\
        --factory --app-dir examples downstream_service:from_environment --port 8001

(``--no-access-log``: WebSocket clients may put the token in the URL.)

Environment: ``DOWNSTREAM_ISSUER`` (the gateway's ``AUTHSVC_ISSUER``), ``DOWNSTREAM_AUDIENCE``
(its ``AUTHSVC_AUDIENCE``, default ``authsvc``), ``DOWNSTREAM_JWKS_REFRESH_INTERVAL`` (seconds
between refetches on an unknown kid, default 10), and for the ``/live`` route, which asks the
gateway about every token (cached 5 s), a confidential client's ``DOWNSTREAM_CLIENT_ID`` and
``DOWNSTREAM_CLIENT_SECRET``.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, WebSocket, WebSocketDisconnect

from authsvc.guard import (
    CurrentPrincipal,
    IntrospectionValidator,
    LivePrincipal,
    Principal,
    TokenValidator,
    install_guard,
    require_scopes,
    websocket_principal,
)

router = APIRouter()
live_router = APIRouter()  # only mounted when introspection credentials are configured


def describe(principal: Principal) -> dict[str, Any]:
    return {
        "sub": principal.sub,
        "username": principal.username,
        "scopes": sorted(principal.scopes),
        "client_id": principal.client_id,
    }


@router.get("/hello")
async def hello() -> dict[str, str]:
    """Unprotected, for comparison."""
    return {"hello": "world"}


@router.get("/me")
async def me(principal: CurrentPrincipal) -> dict[str, Any]:
    """Any valid token from the gateway."""
    return describe(principal)


@router.get("/reports", dependencies=[require_scopes("reports:read")])
async def reports(principal: CurrentPrincipal) -> dict[str, Any]:
    """Needs the ``reports:read`` scope; without it, 403 insufficient_scope."""
    return {"reports": [], "for": principal.sub}


@live_router.get("/live/me")
async def live_me(principal: LivePrincipal) -> dict[str, Any]:
    """Asks the gateway (introspection), so a revoked token stops working within 5 s."""
    return describe(principal)


@router.websocket("/ws")
async def echo(
    websocket: WebSocket, principal: Annotated[Principal, Depends(websocket_principal)]
) -> None:
    """Echoes messages back with the caller's name; closed with 1008 without a good token."""
    await websocket.accept()
    await websocket.send_json({"hello": principal.username or principal.sub})
    try:
        while True:
            message = await websocket.receive_text()
            await websocket.send_json({"from": principal.sub, "echo": message})
    except WebSocketDisconnect:
        return


def create_app(
    issuer: str,
    audience: str = "authsvc",
    *,
    refresh_interval: float = 10.0,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> FastAPI:
    app = FastAPI(title="downstream example")
    live = None
    if client_id is not None and client_secret is not None:
        live = IntrospectionValidator(issuer, audience, client_id, client_secret)
    install_guard(
        app, TokenValidator(issuer, audience, refresh_interval=refresh_interval), live=live
    )
    app.include_router(router)
    if live is not None:
        app.include_router(live_router)
    return app


def from_environment() -> FastAPI:
    """The factory ``uvicorn --factory`` calls; reads the environment only then."""
    return create_app(
        os.environ.get("DOWNSTREAM_ISSUER", "http://127.0.0.1:8000"),
        os.environ.get("DOWNSTREAM_AUDIENCE", "authsvc"),
        refresh_interval=float(os.environ.get("DOWNSTREAM_JWKS_REFRESH_INTERVAL", "10")),
        client_id=os.environ.get("DOWNSTREAM_CLIENT_ID"),
        client_secret=os.environ.get("DOWNSTREAM_CLIENT_SECRET"),
    )
