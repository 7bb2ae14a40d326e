"""Resource Owner Password Credentials grant (RFC 6749 §4.3)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
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
from authsvc.services.users import Credentials, UserService

# One message for unknown user, wrong password and disabled account (no user enumeration).
INVALID_CREDENTIALS = "Invalid username or password"
MAX_CREDENTIAL_LENGTH = 1024


class _AccountLocked(Exception):
    """Raised in a worker thread, answered as wrong credentials on the event loop."""


@dataclass(frozen=True)
class _Login:
    """A verified login, its session started (when the client may refresh)."""

    user: Credentials
    scopes: list[str]
    refresh_token: str | None


class PasswordGrant(BaseGrant):
    GRANT_TYPE = "password"

    # A login's database work is two trips to the threadpool, one on each side of bcrypt
    # (``_begin`` and ``_complete``): every trip and transaction is CPU taken from the
    # hashing threads, which is what bounds a login storm.

    def _load(self, username: str) -> Credentials | None:
        with self.ctx.sessionmaker() as session:
            return UserService(session).credentials(username)

    def _begin(self, address: str | None, username: str) -> tuple[int, Credentials | None]:
        """Count the attempt against the caller's address, then load the user.

        Counted before the password is checked, so a burst of simultaneous guesses cannot
        all slip under the limit; a request that does not end in wrong credentials gets the
        count back. Returns (seconds to wait, 0 when allowed; the user, if any).
        """
        retry_after = self.ctx.failure_limiter.reserve(address)
        if retry_after or len(username) > MAX_CREDENTIAL_LENGTH:
            return retry_after, None
        return 0, self._load(username)

    def _complete(
        self,
        address: str | None,
        user: Credentials,
        client: OAuthClient,
        scopes: list[str],
        password_hash: str,
    ) -> str | None:
        """After a correct password: clear the account's failure count and start the
        session in one transaction, then give the address its count back.

        Returns the refresh token (None when the client may not refresh). Raises
        ``_AccountLocked`` when a burst of wrong passwords locked the account while this one
        was being checked, and InvalidGrantError when the password changed meanwhile (that
        change already ended the user's sessions; this login must not open a new one).
        """
        with self.ctx.sessionmaker() as session:
            if self.ctx.settings.lockout_threshold and not self._lockout(session).record_success(
                user.id
            ):
                session.rollback()
                raise _AccountLocked
            refresh_token = None
            if REFRESH_TOKEN_GRANT in client.grant_types:
                service = SessionService(session, self.ctx.settings.refresh_token_ttl)
                try:
                    refresh_token = service.start(
                        user.id, client.client_id, scopes, password_hash=password_hash
                    )
                except RefreshTokenError:
                    raise InvalidGrantError(INVALID_CREDENTIALS) from None
            else:
                session.commit()
        self.ctx.failure_limiter.refund(address)
        return refresh_token

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

    def _refused(
        self,
        request: TokenRequest,
        client_id: str | None,
        reason: str,
        user: Credentials | None = None,
    ) -> InvalidCredentialsError:
        # The attempted name of an unknown account is not recorded: it is often a password
        # typed into the wrong field.
        self.ctx.audit.record(
            AuditType.LOGIN_FAILED,
            outcome=FAILURE,
            caller=request.caller,
            subject_id=user.id if user else None,
            username=user.username if user else None,
            client_id=client_id,
            reason=reason,
        )
        return InvalidCredentialsError(INVALID_CREDENTIALS)

    async def issue(self, request: TokenRequest) -> dict[str, Any]:
        username = request.require("username")
        password = request.require("password")
        requested = parse_scope(request.get("scope"))
        client = await self.client(request)
        address = request.caller.ip
        retry_after, user = await run_in_threadpool(self._begin, address, username)
        if retry_after:
            raise RateLimitedError(retry_after)
        try:
            login = await self._login(request, client, user, password, requested)
        except InvalidCredentialsError as exc:
            exc.counted = True
            raise
        except BaseException:
            # The success path gave the count back in ``_complete``.
            await run_in_threadpool(self.ctx.failure_limiter.refund, address)
            raise
        return self.access_token_response(
            request,
            client,
            subject=str(login.user.id),
            scopes=login.scopes,
            username=login.user.username,
            refresh_token=login.refresh_token,
        )

    async def _login(
        self,
        request: TokenRequest,
        client: OAuthClient,
        user: Credentials | None,
        password: str,
        requested: list[str] | None,
    ) -> _Login:
        ok, new_hash = await self.ctx.hasher.verify_async(
            password, user.password_hash if user is not None else None
        )
        # The password is checked before is_active and the lockout, so a disabled or locked
        # account costs the same work and gets the same answer as a wrong password.
        if user is None:
            raise self._refused(request, client.audit_id, "unknown_user")
        if is_locked(user.locked_until):
            raise self._refused(request, client.audit_id, "locked", user)
        if not ok:
            if await run_in_threadpool(self._record_failure, user.id):
                self.ctx.audit.record(
                    AuditType.ACCOUNT_LOCKED,
                    caller=request.caller,
                    subject_id=user.id,
                    username=user.username,
                    client_id=client.audit_id,
                    duration=self.ctx.settings.lockout_duration,
                )
            raise self._refused(request, client.audit_id, "wrong_password", user)
        if not user.is_active:
            raise self._refused(request, client.audit_id, "disabled", user)
        current_hash = user.password_hash
        if new_hash is not None:
            stored = await run_in_threadpool(
                self._store_rehash, user.id, new_hash, user.password_hash
            )
            if not stored:
                # The password was changed while we verified the old one.
                raise InvalidGrantError(INVALID_CREDENTIALS)
            current_hash = new_hash
        scopes = grant_scopes(requested, client.restrict(user.scopes))
        try:
            refresh_token = await run_in_threadpool(
                self._complete, request.caller.ip, user, client, scopes, current_hash
            )
        except _AccountLocked:
            raise self._refused(request, client.audit_id, "locked", user) from None
        self.ctx.audit.record(
            AuditType.LOGIN_SUCCEEDED,
            caller=request.caller,
            subject_id=user.id,
            username=user.username,
            client_id=client.audit_id,
        )
        return _Login(user, scopes, refresh_token)
