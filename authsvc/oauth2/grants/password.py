"""Resource Owner Password Credentials grant (RFC 6749 §4.3)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from authsvc.oauth2.errors import InvalidGrantError
from authsvc.oauth2.grants.base import BaseGrant
from authsvc.oauth2.scope import grant_scopes, parse_scope
from authsvc.oauth2.token_endpoint import TokenRequest
from authsvc.services.clients import REFRESH_TOKEN_GRANT
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
            )

    def _store_rehash(self, user_id: uuid.UUID, password_hash: str, old_hash: str) -> bool:
        with self.ctx.sessionmaker() as session:
            return UserService(session).set_password_hash(user_id, password_hash, expected=old_hash)

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

        candidate = None
        if len(username) <= MAX_CREDENTIAL_LENGTH:
            candidate = await run_in_threadpool(self._load, username)
        ok, new_hash = await self.ctx.hasher.verify_async(
            password, candidate.password_hash if candidate is not None else None
        )
        # The password is checked before is_active so a disabled account costs the same work
        # and gets the same answer as a wrong password.
        if candidate is None or not ok or not candidate.is_active:
            raise InvalidGrantError(INVALID_CREDENTIALS)
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
            subject=str(candidate.id),
            client_id=client.client_id,
            scopes=scopes,
            username=candidate.username,
            refresh_token=refresh_token,
        )
