"""Admin API for users and scopes; the whole router requires the ``admin`` scope."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from authsvc.api.deps import AdminUser, AuditDep, ContextDep, SessionDep, require_scopes
from authsvc.api.responses import SCOPED, Responses, detail, unknown_scopes
from authsvc.db.models import User
from authsvc.schemas import (
    PRINTABLE_PATTERN,
    AdminUserUpdate,
    ScopeCreate,
    ScopeOut,
    SessionOut,
    UserCreate,
    UserOut,
    UserPage,
)
from authsvc.services.audit import AuditType
from authsvc.services.sessions import SessionService
from authsvc.services.users import (
    NewUser,
    ScopeExistsError,
    ScopeService,
    UnknownScopeError,
    UserExistsError,
    UserService,
)

ADMIN_SCOPE = "admin"

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[require_scopes(ADMIN_SCOPE)],
    responses=SCOPED,
)
NOT_FOUND: Responses = {404: detail("User not found")}


def _get_user_or_404(service: UserService, user_id: uuid.UUID) -> User:
    user = service.get(user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "User not found")
    return user


@router.get("/users", response_model=UserPage)
def list_users(
    session: SessionDep,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    q: Annotated[
        str | None,
        Query(
            max_length=150,
            pattern=PRINTABLE_PATTERN,
            description="Username or e-mail contains",
        ),
    ] = None,
) -> UserPage:
    users, total = UserService(session).page(offset=offset, limit=limit, search=q)
    return UserPage(items=[UserOut.model_validate(user) for user in users], total=total)


@router.post(
    "/users",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    responses={409: detail("Username already taken")},
)
def create_user(body: UserCreate, session: SessionDep, ctx: ContextDep, audit: AuditDep) -> UserOut:
    new = NewUser(
        username=body.username,
        password_hash=ctx.hasher.hash(body.password),
        email=body.email,
        full_name=body.full_name,
        scopes=tuple(body.scopes),
        is_active=body.is_active,
    )
    try:
        user = UserService(session).create(new)
    except UserExistsError:
        raise HTTPException(status.HTTP_409_CONFLICT, "Username already taken") from None
    except UnknownScopeError as exc:
        raise unknown_scopes(exc.names) from None
    audit(
        AuditType.USER_CREATED,
        subject_id=user.id,
        username=user.username,
        scopes=list(body.scopes),
        is_active=body.is_active,
    )
    return UserOut.model_validate(user)


@router.get("/users/{user_id}", response_model=UserOut, responses=NOT_FOUND)
def read_user(user_id: uuid.UUID, session: SessionDep) -> UserOut:
    return UserOut.model_validate(_get_user_or_404(UserService(session), user_id))


@router.patch(
    "/users/{user_id}",
    response_model=UserOut,
    responses={**NOT_FOUND, 409: detail("Admins cannot disable or demote themselves")},
)
def update_user(
    user_id: uuid.UUID,
    body: AdminUserUpdate,
    admin: AdminUser,
    session: SessionDep,
    ctx: ContextDep,
    audit: AuditDep,
) -> UserOut:
    service = UserService(session)
    user = _get_user_or_404(service, user_id)
    changes = body.changes()
    if user.id == admin.id and (
        changes.get("is_active") is False
        or ("scopes" in changes and ADMIN_SCOPE not in changes["scopes"])
    ):
        # An admin locking themselves out is nearly always a mistake that needs database access
        # to undo; another admin can still do it.
        raise HTTPException(status.HTTP_409_CONFLICT, "Admins cannot disable or demote themselves")
    changed = sorted(changes)  # names only: never the new password
    if "password" in changes:
        # bcrypt may queue behind a login storm: end the read transaction first, so no
        # pooled connection waits with it (objects stay loaded: expire_on_commit is off).
        session.commit()
        changes["password_hash"] = ctx.hasher.hash(changes.pop("password"))
    try:
        updated = service.update(user, changes)
    except UnknownScopeError as exc:
        raise unknown_scopes(exc.names) from None
    audit(
        AuditType.USER_UPDATED,
        subject_id=updated.id,
        username=updated.username,
        fields=changed,
        **{name: changes[name] for name in ("is_active", "scopes") if name in changes},
    )
    return UserOut.model_validate(updated)


@router.delete(
    "/users/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**NOT_FOUND, 409: detail("Admins cannot delete themselves")},
)
def delete_user(
    user_id: uuid.UUID, admin: AdminUser, session: SessionDep, audit: AuditDep
) -> Response:
    service = UserService(session)
    user = _get_user_or_404(service, user_id)
    if user.id == admin.id:
        raise HTTPException(status.HTTP_409_CONFLICT, "Admins cannot delete themselves")
    username = user.username
    service.delete(user)
    audit(AuditType.USER_DELETED, subject_id=user_id, username=username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/users/{user_id}/sessions", response_model=list[SessionOut], responses=NOT_FOUND)
def list_user_sessions(
    user_id: uuid.UUID, session: SessionDep, ctx: ContextDep
) -> list[SessionOut]:
    user = _get_user_or_404(UserService(session), user_id)
    families = SessionService(session, ctx.settings.refresh_token_ttl).list_for_user(user.id)
    return [SessionOut.model_validate(family) for family in families]


@router.delete(
    "/users/{user_id}/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: detail("User or session not found")},
)
def revoke_user_session(
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    session: SessionDep,
    ctx: ContextDep,
    audit: AuditDep,
) -> Response:
    user = _get_user_or_404(UserService(session), user_id)
    service = SessionService(session, ctx.settings.refresh_token_ttl)
    if not service.revoke_family(session_id, user_id=user.id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Session not found")
    audit(
        AuditType.SESSION_REVOKED,
        subject_id=user.id,
        username=user.username,
        session_id=str(session_id),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/users/{user_id}/revoke-sessions",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
)
def revoke_all_user_sessions(
    user_id: uuid.UUID, session: SessionDep, ctx: ContextDep, audit: AuditDep
) -> Response:
    """End every session and refuse every access token issued until now (the cutoff)."""
    user = _get_user_or_404(UserService(session), user_id)
    SessionService(session, ctx.settings.refresh_token_ttl).revoke_all_for_user(user.id)
    audit(AuditType.USER_SESSIONS_REVOKED, subject_id=user.id, username=user.username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/scopes", response_model=list[ScopeOut])
def list_scopes(session: SessionDep) -> list[ScopeOut]:
    return [ScopeOut.model_validate(scope) for scope in ScopeService(session).all()]


@router.post(
    "/scopes",
    response_model=ScopeOut,
    status_code=status.HTTP_201_CREATED,
    responses={409: detail("Scope already exists")},
)
def create_scope(body: ScopeCreate, session: SessionDep, audit: AuditDep) -> ScopeOut:
    try:
        scope = ScopeService(session).create(body.name, body.description)
    except ScopeExistsError:
        raise HTTPException(status.HTTP_409_CONFLICT, "Scope already exists") from None
    audit(AuditType.SCOPE_CREATED, scope=scope.name)
    return ScopeOut.model_validate(scope)
