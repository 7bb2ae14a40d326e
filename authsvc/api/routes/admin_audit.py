"""The audit trail for admins: a paged query, and a WebSocket that pushes new events.

The stream polls the database (every half second) rather than listening to this process, so an
admin connected to one replica sees the events written by all of them.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from authsvc.api.deps import SessionDep, authorize_user, require_scopes
from authsvc.api.responses import SCOPED, unprocessable
from authsvc.context import AppContext
from authsvc.oauth2.bearer import refuse_websocket, refused, token_from_websocket
from authsvc.oauth2.errors import OAuth2Error, TemporarilyUnavailableError
from authsvc.schemas import PRINTABLE_PATTERN, AuditEventOut, AuditPage
from authsvc.security.principal import Principal
from authsvc.security.tokens import TokenValidationError
from authsvc.services.audit import AuditQuery

ADMIN_SCOPE = "admin"
_EVENT_TYPE = re.compile(r"[a-z_.]{1,64}")
POLL_INTERVAL = 0.5
# How long an id skipped by the sequence is waited for (a late commit from another replica).
LATE_WINDOW = 30.0
MAX_GAPS = 1000
RECHECK_INTERVAL = 5.0

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get(
    "/audit",
    response_model=AuditPage,
    dependencies=[require_scopes(ADMIN_SCOPE)],
    responses=SCOPED,
)
def list_audit_events(
    session: SessionDep,
    types: Annotated[
        list[str] | None, Query(alias="type", description="Event types (repeatable)")
    ] = None,
    user: Annotated[
        str | None,
        Query(max_length=150, pattern=PRINTABLE_PATTERN, description="User id or username"),
    ] = None,
    since: Annotated[datetime | None, Query(description="Only events at or after")] = None,
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="next_before of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AuditPage:
    """Newest first. Page on with ``before=next_before`` until it is null."""
    if any(not _EVENT_TYPE.fullmatch(name) for name in types or ()):
        raise unprocessable(("query", "type"), "not an event type")
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)  # a time without an offset is read as UTC
    events = AuditQuery(session).page(
        types=types or (), user=user, since=since, before=before, limit=limit
    )
    return AuditPage(
        items=[AuditEventOut.model_validate(event) for event in events],
        next_before=events[-1].id if len(events) == limit else None,
    )


def _admin_claims(ctx: AppContext, token: str) -> dict[str, Any]:
    try:
        claims = ctx.keys.verify(token)
    except TokenValidationError as exc:
        raise refused(exc) from None
    with ctx.sessionmaker() as session:
        authorize_user(session, Principal.from_claims(claims), ctx.denylist, [ADMIN_SCOPE])
    return claims


class _Cursor:
    """Where the stream is: the highest id sent, and the ids below it not seen yet.

    Ids come from a sequence, and a replica may commit id 10 after another committed 11; the
    gap is remembered for LATE_WINDOW and fetched if it fills, so no event is skipped.
    """

    def __init__(self, last_id: int) -> None:
        self.last_id = last_id
        self.gaps: dict[int, float] = {}

    def fetch(self, ctx: AppContext) -> list[dict[str, Any]]:
        now = time.monotonic()
        self.gaps = {gap: until for gap, until in self.gaps.items() if until > now}
        with ctx.sessionmaker() as session:
            query = AuditQuery(session)
            events = query.by_ids(list(self.gaps)[:MAX_GAPS]) + query.after(self.last_id)
        for event in events:
            self.gaps.pop(event.id, None)
            if event.id > self.last_id:
                # The most recent skipped ids are the likely late commits; bounded in memory
                # and in work (a jump of millions costs MAX_GAPS steps, not millions).
                start = max(self.last_id + 1, event.id - (MAX_GAPS - len(self.gaps)))
                for missing in range(start, event.id):
                    self.gaps[missing] = now + LATE_WINDOW
                self.last_id = event.id
        return [AuditEventOut.model_validate(event).model_dump(mode="json") for event in events]


def _last_id(ctx: AppContext) -> int:
    with ctx.sessionmaker() as session:
        return AuditQuery(session).last_id()


@router.websocket("/audit/stream")
async def stream_audit_events(websocket: WebSocket) -> None:
    """New events as JSON messages, for an admin token (header or ``?access_token=``).

    Closed with 1008 when the token is refused, expires or loses the admin scope.
    """
    ctx: AppContext = websocket.app.state.ctx
    try:
        token = token_from_websocket(websocket)
        claims = await run_in_threadpool(_admin_claims, ctx, token)
    except OAuth2Error as exc:
        raise await refuse_websocket(websocket, exc) from None
    except ctx.unavailable_errors:
        # The check could not be made: 1013 (try again later), not a failed handshake.
        raise await refuse_websocket(websocket, TemporarilyUnavailableError()) from None
    await websocket.accept()
    cursor = _Cursor(await run_in_threadpool(_last_id, ctx))
    checked = time.monotonic()

    async def watch_for_close() -> None:
        # Nothing is expected from the client; receiving is how a close is noticed.
        try:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        except WebSocketDisconnect:
            pass
        tasks.cancel_scope.cancel()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watch_for_close)
        while True:
            if time.time() >= claims["exp"] or time.monotonic() - checked > RECHECK_INTERVAL:
                try:
                    await run_in_threadpool(_admin_claims, ctx, token)
                except OAuth2Error as exc:
                    await websocket.close(code=1008, reason=exc.error or "invalid_token")
                    tasks.cancel_scope.cancel()
                    return
                checked = time.monotonic()
            for event in await run_in_threadpool(cursor.fetch, ctx):
                await websocket.send_json(event)
            await anyio.sleep(POLL_INTERVAL)
