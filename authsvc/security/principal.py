"""The verified identity a request carries, read from access token claims.

The gateway's dependencies and :mod:`authsvc.guard` hand routes this same type, so a route
moved from the gateway to a downstream service keeps its signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Principal:
    sub: str
    client_id: str | None
    scopes: frozenset[str]
    jti: str
    username: str | None = None
    # Every claim of the verified token (or every member of an introspection answer).
    claims: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Principal:
        scope = claims.get("scope") or ""
        username = claims.get("preferred_username", claims.get("username"))
        return cls(
            sub=claims["sub"],
            client_id=claims.get("client_id"),
            scopes=frozenset(str(scope).split()),
            jti=str(claims.get("jti", "")),
            username=username if isinstance(username, str) else None,
            claims=claims,
        )
