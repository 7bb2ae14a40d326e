"""Scope syntax and the rule for granting scopes (RFC 6749 §3.3)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from authsvc.oauth2.errors import InvalidScopeError

# scope-token = 1*( %x21 / %x23-5B / %x5D-7E ): printable ASCII without space, '"' and '\'.
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,64}")


def is_scope_token(value: str) -> bool:
    # fullmatch: with match(), "$" would also accept a trailing newline.
    return bool(SCOPE_TOKEN.fullmatch(value))


def parse_scope(value: str | None) -> list[str] | None:
    """Split a scope parameter; ``None`` means the client asked for no particular scope."""
    if value is None:
        return None
    tokens = value.split(" ")
    if any(not is_scope_token(token) for token in tokens):
        raise InvalidScopeError("The scope parameter is malformed")
    return list(dict.fromkeys(tokens))


def grant_scopes(requested: list[str] | None, allowed: Iterable[str]) -> list[str]:
    """All allowed scopes when none are requested; otherwise the request, if it is a subset."""
    allowed_set = set(allowed)
    if requested is None:
        return sorted(allowed_set)
    refused = [scope for scope in requested if scope not in allowed_set]
    if refused:
        raise InvalidScopeError(f"Scope not allowed: {' '.join(refused)}")
    return requested
