"""The verified identity a request carries, as read from access token claims."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AccessTokenClaims:
    sub: str
    client_id: str | None
    scopes: frozenset[str]
    jti: str
    username: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> AccessTokenClaims:
        scope = claims.get("scope") or ""
        return cls(
            sub=claims["sub"],
            client_id=claims.get("client_id"),
            scopes=frozenset(scope.split()),
            jti=claims["jti"],
            username=claims.get("preferred_username"),
            raw=claims,
        )
