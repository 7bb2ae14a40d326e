"""Authorization Server Metadata (RFC 8414 §2)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def authorization_server_metadata(
    *,
    issuer: str,
    grant_types: Iterable[str],
    scopes: Iterable[str],
    auth_methods: Iterable[str],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oauth2/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "grant_types_supported": list(grant_types),
        "scopes_supported": list(scopes),
        "token_endpoint_auth_methods_supported": list(auth_methods),
        # REQUIRED by §2 even though we have no authorization endpoint: no response types.
        "response_types_supported": [],
        "service_documentation": f"{issuer}/docs",
    }
    metadata.update(extra or {})
    return metadata
