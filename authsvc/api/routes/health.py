"""Liveness and readiness probes for orchestrators and load balancers."""

from __future__ import annotations

from typing import Any, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from authsvc.api.deps import ContextDep
from authsvc.context import AppContext
from authsvc.security.keys import NoSigningKeyError

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive; says nothing about its dependencies on purpose."""
    return {"status": "ok"}


def _database_answers(ctx: AppContext) -> str:
    try:
        with ctx.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return "unavailable"
    return "ok"


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: see checks"}},
)
async def readyz(ctx: ContextDep) -> JSONResponse:
    """Ready to serve: the database (and Redis, when configured) answers, a key is loaded.

    The database check has a deadline: a server that accepts connections but never answers
    must make the probe say 503, not hang it (the stuck thread is left to its timeouts).
    """
    checks: dict[str, Any] = {"database": "unavailable"}
    with anyio.move_on_after(ctx.settings.db_connect_timeout + ctx.settings.db_pool_timeout):
        checks["database"] = await anyio.to_thread.run_sync(
            _database_answers, ctx, abandon_on_cancel=True
        )
    if ctx.redis is not None:
        try:
            await anyio.to_thread.run_sync(ctx.redis.ping)
            checks["redis"] = "ok"
        except ctx.unavailable_errors:
            checks["redis"] = "unavailable"
    try:
        ctx.keys.key_set.active  # noqa: B018 - raises when there is no signing key
        checks["keys"] = "ok"
    except NoSigningKeyError:
        checks["keys"] = "missing"
    if ctx.shutting_down:
        checks["process"] = "shutting_down"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
        headers={"Cache-Control": "no-store"},
    )
