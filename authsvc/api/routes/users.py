"""``/users/me``: what a signed-in user may see and change about themselves."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, Response, status

from authsvc.api.deps import AuditDep, ContextDep, CurrentAccount, CurrentUser, SessionDep
from authsvc.api.responses import BEARER, DetailBody, OAuth2ErrorBody, detail
from authsvc.schemas import PasswordChange, SessionOut, UserOut, UserSelfUpdate
from authsvc.services.audit import FAILURE, AuditType
from authsvc.services.lockout import AccountLockout, is_locked
from authsvc.services.sessions import SessionService
from authsvc.services.users import UserService

router = APIRouter(prefix="/users", tags=["users"], responses=BEARER)


@router.get("/me", response_model=UserOut)
async def read_me(user: CurrentAccount) -> UserOut:
    return UserOut.model_validate(user)


@router.patch("/me", response_model=UserOut)
def update_me(body: UserSelfUpdate, user: CurrentUser, session: SessionDep) -> UserOut:
    return UserOut.model_validate(UserService(session).update(user, body.changes()))


@router.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        400: {
            "model": OAuth2ErrorBody | DetailBody,
            "description": "The current password is incorrect (or a malformed Authorization)",
        }
    },
)
def change_my_password(
    body: PasswordChange,
    user: CurrentUser,
    session: SessionDep,
    ctx: ContextDep,
    audit: AuditDep,
) -> Response:
    lockout = AccountLockout(
        session,
        threshold=ctx.settings.lockout_threshold,
        duration=ctx.settings.lockout_duration,
    )
    # bcrypt may queue behind a login storm: end the transaction that loaded the user first,
    # so no pooled connection waits with it (the row stays loaded: expire_on_commit is off).
    session.commit()
    ok, _ = ctx.hasher.verify(body.current_password, user.password_hash)
    # The current password is a login by another door: a stolen access token must not be
    # a way to guess it without the lockout.
    if is_locked(user.locked_until) or not ok:
        if not is_locked(user.locked_until):
            lockout.record_failure(user.id)
        audit(
            AuditType.USER_PASSWORD_CHANGED,
            outcome=FAILURE,
            subject_id=user.id,
            username=user.username,
            reason="wrong_current_password",
        )
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "The current password is incorrect")
    UserService(session).update(user, {"password_hash": ctx.hasher.hash(body.new_password)})
    audit(AuditType.USER_PASSWORD_CHANGED, subject_id=user.id, username=user.username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me/sessions", response_model=list[SessionOut])
def list_my_sessions(
    user: CurrentAccount, session: SessionDep, ctx: ContextDep
) -> list[SessionOut]:
    sessions = SessionService(session, ctx.settings.refresh_token_ttl).list_for_user(user.id)
    return [SessionOut.model_validate(family) for family in sessions]


@router.delete(
    "/me/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: detail("No such session of yours")},
)
def revoke_my_session(
    session_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    ctx: ContextDep,
    audit: AuditDep,
) -> Response:
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
