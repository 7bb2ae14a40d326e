"""Resource Owner Password Credentials grant (RFC 6749 §4.3)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from authsvc.oauth2.client_auth import OAuthClient
from authsvc.oauth2.errors import (
    InvalidCredentialsError,
    InvalidGrantError,
    InvalidScopeError,
    RateLimitedError,
)
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


class _PasswordChanged(Exception):
    """The password changed while the old one was being checked: the login is refused."""


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
        limiter = self.ctx.failure_limiter
        retry_after = limiter.reserve(address)
        if retry_after or len(username) > MAX_CREDENTIAL_LENGTH:
            return retry_after, None
        try:
            return 0, self._load(username)
        except BaseException:
            limiter.refund(address)
            raise

    def _complete(
        self,
        address: str | None,
        user: Credentials,
        client: OAuthClient,
        requested: list[str] | None,
        new_hash: str | None,
    ) -> tuple[list[str], str | None]:
        """After a correct password, in one transaction: clear the account's failure count,
        store the upgraded hash, start the session; then give the address its count back.

        The lockout is checked first, in the statement that clears it: a correct password
        that was being checked while a burst of wrong ones locked the account is refused
        like them (``_AccountLocked``, the one outcome that keeps the count), before anything
        that only a correct password could get (a scope error, a session). A password
        changed meanwhile refuses the login (``_PasswordChanged``): that change ended the
        user's sessions, and this login must not open a new one.

        Returns the granted scopes and the refresh token (None when the client may not
        refresh). The count is given back here, exactly once, whatever else happens.
        """
        counted = False
        try:
            with self.ctx.sessionmaker() as session:
                if self.ctx.settings.lockout_threshold and not self._lockout(
                    session
                ).record_success(user.id):
                    counted = True
                    raise _AccountLocked
                try:
                    scopes = grant_scopes(requested, client.restrict(user.scopes))
                except InvalidScopeError:
                    session.commit()  # the password was right: its failures are cleared
                    raise
                password_hash = user.password_hash
                if new_hash is not None:
                    if not UserService(session).set_password_hash(
                        user.id, new_hash, expected=password_hash
                    ):
                        raise _PasswordChanged
                    password_hash = new_hash
                refresh_token = None
                if REFRESH_TOKEN_GRANT in client.grant_types:
                    service = SessionService(session, self.ctx.settings.refresh_token_ttl)
                    try:
                        refresh_token = service.start(
                            user.id, client.client_id, scopes, password_hash=password_hash
                        )
                    except RefreshTokenError:
                        raise _PasswordChanged from None
                else:
                    session.commit()
            return scopes, refresh_token
        finally:
            if not counted:
                self.ctx.failure_limiter.refund(address)

    def _lockout(self, session: Session) -> AccountLockout:
        settings = self.ctx.settings
        return AccountLockout(
            session, threshold=settings.lockout_threshold, duration=settings.lockout_duration
        )

    def _record_failure(self, user_id: uuid.UUID) -> bool:
        with self.ctx.sessionmaker() as session:
            return self._lockout(session).record_failure(user_id)

    def _audit_refusal(
        self, request: TokenRequest, client_id: str | None, reason: str, user: Credentials | None
    ) -> None:
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

    def _refused(
        self,
        request: TokenRequest,
        client_id: str | None,
        reason: str,
        user: Credentials | None = None,
    ) -> InvalidCredentialsError:
        """Wrong credentials, as far as the caller can tell; counted already (``_begin``)."""
        self._audit_refusal(request, client_id, reason, user)
        refusal = InvalidCredentialsError(INVALID_CREDENTIALS)
        refusal.counted = True
        return refusal

    async def issue(self, request: TokenRequest) -> dict[str, Any]:
        username = request.require("username")
        password = request.require("password")
        requested = parse_scope(request.get("scope"))
        client = await self.client(request)
        address = request.caller.ip
        retry_after, candidate = await run_in_threadpool(self._begin, address, username)
        if retry_after:
            raise RateLimitedError(retry_after)
        try:
            user, new_hash = await self._check_password(request, client, candidate, password)
        except InvalidCredentialsError:
            raise  # wrong credentials keep the count
        except BaseException:
            await run_in_threadpool(self.ctx.failure_limiter.refund, address)
            raise
        # From here ``_complete`` gives the count back itself, whatever happens.
        try:
            scopes, refresh_token = await run_in_threadpool(
                self._complete, address, user, client, requested, new_hash
            )
        except _AccountLocked:
            raise self._refused(request, client.audit_id, "locked", user) from None
        except _PasswordChanged:
            self._audit_refusal(request, client.audit_id, "password_changed", user)
            raise InvalidGrantError(INVALID_CREDENTIALS) from None
        self.ctx.audit.record(
            AuditType.LOGIN_SUCCEEDED,
            caller=request.caller,
            subject_id=user.id,
            username=user.username,
            client_id=client.audit_id,
        )
        return self.access_token_response(
            request,
            client,
            subject=str(user.id),
            scopes=scopes,
            username=user.username,
            refresh_token=refresh_token,
        )

    async def _check_password(
        self,
        request: TokenRequest,
        client: OAuthClient,
        user: Credentials | None,
        password: str,
    ) -> tuple[Credentials, str | None]:
        """The user whose password this is, and its upgraded hash when the cost changed;
        raises wrong credentials otherwise."""
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
        return user, new_hash
