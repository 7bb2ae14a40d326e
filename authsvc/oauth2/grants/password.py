"""Resource Owner Password Credentials grant (RFC 6749 §4.3)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from authsvc.oauth2.client_auth import OAuthClient
from authsvc.oauth2.errors import InvalidCredentialsError, InvalidGrantError, RateLimitedError
from authsvc.oauth2.grants.base import BaseGrant
from authsvc.oauth2.scope import grant_scopes, parse_scope
from authsvc.oauth2.token_endpoint import TokenRequest
from authsvc.services.audit import FAILURE, AuditType
from authsvc.services.clients import REFRESH_TOKEN_GRANT
from authsvc.services.lockout import AccountLockout, is_locked
from authsvc.services.sessions import RefreshTokenError, SessionService
from authsvc.services.users import UserService

# One message for unknown user, wrong password and disabled account (no user enumeration).
INVALID_CREDENTIALS = "Invalid username or password"
MAX_CREDENTIAL_LENGTH = 1024


@dataclass(frozen=True)
class _Candidate:
    id: uuid.UUID
    username: str
    password_hash: str
    is_active: bool
    scopes: tuple[str, ...]
    locked_until: datetime | None


class PasswordGrant(BaseGrant):
    GRANT_TYPE = "password"

    def _load(self, username: str) -> _Candidate | None:
        with self.ctx.sessionmaker() as session:
            user = UserService(session).get_by_username(username)
            if user is None:
                return None
            return _Candidate(
                id=user.id,
                username=user.username,
                password_hash=user.password_hash,
                is_active=user.is_active,
                scopes=tuple(user.scope_names),
                locked_until=user.locked_until,
            )

    def _store_rehash(self, user_id: uuid.UUID, password_hash: str, old_hash: str) -> bool:
        with self.ctx.sessionmaker() as session:
            return UserService(session).set_password_hash(user_id, password_hash, expected=old_hash)

    def _lockout(self, session: Session) -> AccountLockout:
        settings = self.ctx.settings
        return AccountLockout(
            session, threshold=settings.lockout_threshold, duration=settings.lockout_duration
        )

    def _record_failure(self, user_id: uuid.UUID) -> bool:
        with self.ctx.sessionmaker() as session:
            return self._lockout(session).record_failure(user_id)

    def _record_success(self, user_id: uuid.UUID) -> bool:
        with self.ctx.sessionmaker() as session:
            return self._lockout(session).record_success(user_id)

    def _refused(
        self,
        request: TokenRequest,
        client_id: str | None,
        reason: str,
        candidate: _Candidate | None = None,
    ) -> InvalidCredentialsError:
        # The attempted name of an unknown account is not recorded: it is often a password
        # typed into the wrong field.
        self.ctx.audit.record(
            AuditType.LOGIN_FAILED,
            outcome=FAILURE,
            caller=request.caller,
            subject_id=candidate.id if candidate else None,
            username=candidate.username if candidate else None,
            client_id=client_id,
            reason=reason,
        )
        return InvalidCredentialsError(INVALID_CREDENTIALS)

    def _start_session(
        self, user_id: uuid.UUID, client_id: str, scopes: list[str], password_hash: str
    ) -> str:
        with self.ctx.sessionmaker() as session:
            service = SessionService(session, self.ctx.settings.refresh_token_ttl)
            try:
                return service.start(user_id, client_id, scopes, password_hash=password_hash)
            except RefreshTokenError:
                raise InvalidGrantError(INVALID_CREDENTIALS) from None

    async def issue(self, request: TokenRequest) -> dict[str, Any]:
        username = request.require("username")
        password = request.require("password")
        requested = parse_scope(request.get("scope"))
        client = await self.client(request)
        # The attempt counts against the caller's address before the password is checked, so
        # a burst of simultaneous guesses cannot all slip under the limit; a request that
        # does not end in wrong credentials gets the count back.
        limiter = self.ctx.failure_limiter
        retry_after = await run_in_threadpool(limiter.reserve, request.caller.ip)
        if retry_after:
            raise RateLimitedError(retry_after)
        try:
            body = await self._issue(request, client, username, password, requested)
        except InvalidCredentialsError as exc:
            exc.counted = True
            raise
        except BaseException:
            await run_in_threadpool(limiter.refund, request.caller.ip)
            raise
        await run_in_threadpool(limiter.refund, request.caller.ip)
        return body

    async def _issue(
        self,
        request: TokenRequest,
        client: OAuthClient,
        username: str,
        password: str,
        requested: list[str] | None,
    ) -> dict[str, Any]:
        candidate = None
        if len(username) <= MAX_CREDENTIAL_LENGTH:
            candidate = await run_in_threadpool(self._load, username)
        ok, new_hash = await self.ctx.hasher.verify_async(
            password, candidate.password_hash if candidate is not None else None
        )
        # The password is checked before is_active and the lockout, so a disabled or locked
        # account costs the same work and gets the same answer as a wrong password.
        if candidate is None:
            raise self._refused(request, client.audit_id, "unknown_user")
        if is_locked(candidate.locked_until):
            raise self._refused(request, client.audit_id, "locked", candidate)
        if not ok:
            if await run_in_threadpool(self._record_failure, candidate.id):
                self.ctx.audit.record(
                    AuditType.ACCOUNT_LOCKED,
                    caller=request.caller,
                    subject_id=candidate.id,
                    username=candidate.username,
                    client_id=client.audit_id,
                    duration=self.ctx.settings.lockout_duration,
                )
            raise self._refused(request, client.audit_id, "wrong_password", candidate)
        if not candidate.is_active:
            raise self._refused(request, client.audit_id, "disabled", candidate)
        if self.ctx.settings.lockout_threshold and not await run_in_threadpool(
            self._record_success, candidate.id
        ):
            raise self._refused(request, client.audit_id, "locked", candidate)
        self.ctx.audit.record(
            AuditType.LOGIN_SUCCEEDED,
            caller=request.caller,
            subject_id=candidate.id,
            username=candidate.username,
            client_id=client.audit_id,
        )
        current_hash = candidate.password_hash
        if new_hash is not None:
            stored = await run_in_threadpool(
                self._store_rehash, candidate.id, new_hash, candidate.password_hash
            )
            if not stored:
                # The password was changed while we verified the old one.
                raise InvalidGrantError(INVALID_CREDENTIALS)
            current_hash = new_hash

        scopes = grant_scopes(requested, client.restrict(candidate.scopes))
        refresh_token = None
        if REFRESH_TOKEN_GRANT in client.grant_types:
            refresh_token = await run_in_threadpool(
                self._start_session, candidate.id, client.client_id, scopes, current_hash
            )
        return self.access_token_response(
            request,
            client,
            subject=str(candidate.id),
            scopes=scopes,
            username=candidate.username,
            refresh_token=refresh_token,
        )
