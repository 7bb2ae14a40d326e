"""The client registry (RFC 6749 §2): who may ask for tokens, with which grants and scopes.

Client secrets are 256 random bits shown once and stored as SHA-256: with that much entropy a
slow hash protects nothing more, and client authentication stays cheap on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from authsvc.db.models import Client, Scope, utcnow
from authsvc.services.users import UnknownScopeError

PASSWORD_GRANT = "password"  # noqa: S105 - grant type names, not secrets
REFRESH_TOKEN_GRANT = "refresh_token"  # noqa: S105
CLIENT_CREDENTIALS_GRANT = "client_credentials"
GRANT_TYPES = (PASSWORD_GRANT, REFRESH_TOKEN_GRANT, CLIENT_CREDENTIALS_GRANT)
# An unregistered client_id stands for a public client with exactly these grants.
PUBLIC_CLIENT_GRANTS = frozenset({PASSWORD_GRANT, REFRESH_TOKEN_GRANT})


class ClientServiceError(Exception):
    """Base for the domain errors of this module."""


class InvalidClientConfigError(ClientServiceError):
    pass


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, secret_hash: str | None) -> bool:
    # Constant time, and the same work whether or not the client has a secret at all.
    expected = secret_hash or "0" * 64
    return hmac.compare_digest(hash_secret(secret), expected) and secret_hash is not None


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class NewClient:
    name: str
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...] = ()
    confidential: bool = True


class ClientService:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, client_id: str) -> Client | None:
        return self.session.get(Client, client_id)

    def page(self, *, offset: int, limit: int) -> tuple[list[Client], int]:
        total = self.session.scalar(select(func.count()).select_from(Client)) or 0
        clients = self.session.scalars(
            select(Client).order_by(Client.created_at, Client.client_id).offset(offset).limit(limit)
        ).all()
        return list(clients), total

    def _check(self, grant_types: Iterable[str], scopes: Iterable[str], confidential: bool) -> None:
        grants = set(grant_types)
        if not grants:
            raise InvalidClientConfigError("a client needs at least one grant type")
        if CLIENT_CREDENTIALS_GRANT in grants and not confidential:
            # RFC 6749 §4.4: the client credentials grant MUST only be used by confidential clients.
            raise InvalidClientConfigError("client_credentials needs a confidential client")
        wanted = set(scopes)
        if wanted:
            found = set(self.session.scalars(select(Scope.name).where(Scope.name.in_(wanted))))
            if wanted - found:
                raise UnknownScopeError(wanted - found)

    def create(self, new: NewClient) -> tuple[Client, str | None]:
        """Register a client; the secret (confidential clients only) is returned once, here."""
        self._check(new.grant_types, new.scopes, new.confidential)
        secret = new_secret() if new.confidential else None
        client = Client(
            client_id=secrets.token_urlsafe(16),
            name=new.name,
            secret_hash=hash_secret(secret) if secret else None,
            confidential=new.confidential,
            grant_types=sorted(set(new.grant_types)),
            scopes=sorted(set(new.scopes)),
        )
        self.session.add(client)
        self.session.commit()
        return client, secret

    def update(self, client: Client, changes: dict[str, Any]) -> Client:
        grant_types = changes.get("grant_types", client.grant_types)
        scopes = changes.get("scopes", client.scopes)
        self._check(grant_types, scopes, client.confidential)
        if "name" in changes:
            client.name = changes["name"]
        client.grant_types = sorted(set(grant_types))
        client.scopes = sorted(set(scopes))
        client.updated_at = utcnow()
        self.session.commit()
        return client

    def rotate_secret(self, client: Client) -> str:
        if not client.confidential:
            raise InvalidClientConfigError("a public client has no secret")
        secret = new_secret()
        client.secret_hash = hash_secret(secret)
        client.updated_at = utcnow()
        self.session.commit()
        return secret

    def delete(self, client: Client) -> None:
        self.session.delete(client)
        self.session.commit()
