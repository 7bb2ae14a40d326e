"""Resource Owner Password Credentials grant (RFC 6749 §4.3)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from authsvc.oauth2.client_auth import identify_client
from authsvc.oauth2.errors import InvalidGrantError
from authsvc.oauth2.scope import grant_scopes, parse_scope
from authsvc.oauth2.token_endpoint import TokenRequest
from authsvc.security.tokens import build_access_token_claims
from authsvc.services.users import UserService

if TYPE_CHECKING:
    from authsvc.context import AppContext

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


class PasswordGrant:
    GRANT_TYPE = "password"

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

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

    def _store_rehash(self, user_id: uuid.UUID, password_hash: str) -> None:
        with self.ctx.sessionmaker() as session:
            UserService(session).set_password_hash(user_id, password_hash)

    async def issue(self, request: TokenRequest) -> dict[str, Any]:
        username = request.require("username")
        password = request.require("password")
        client_id = identify_client(request.authorization, request.get("client_id"))
        requested = parse_scope(request.get("scope"))

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
        if new_hash is not None:
            await run_in_threadpool(self._store_rehash, candidate.id, new_hash)

        scopes = grant_scopes(requested, candidate.scopes)
        settings = self.ctx.settings
        claims = build_access_token_claims(
            issuer=settings.issuer,
            audience=settings.audience,
            subject=str(candidate.id),
            client_id=client_id,
            scopes=scopes,
            ttl=settings.access_token_ttl,
            extra={"preferred_username": candidate.username},
        )
        return {
            "access_token": self.ctx.signer.sign(claims),
            "token_type": "Bearer",
            "expires_in": settings.access_token_ttl,
            "scope": " ".join(scopes),
        }
