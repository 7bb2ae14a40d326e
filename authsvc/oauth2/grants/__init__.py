"""One class per grant type, each with a ``GRANT_TYPE`` constant; see ``build_grants``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from authsvc.oauth2.grants.client_credentials import ClientCredentialsGrant
from authsvc.oauth2.grants.password import PasswordGrant
from authsvc.oauth2.grants.refresh_token import RefreshTokenGrant

if TYPE_CHECKING:
    from authsvc.context import AppContext
    from authsvc.oauth2.token_endpoint import Grant


def build_grants(ctx: AppContext) -> list[Grant]:
    return [PasswordGrant(ctx), RefreshTokenGrant(ctx), ClientCredentialsGrant(ctx)]


__all__ = ["ClientCredentialsGrant", "PasswordGrant", "RefreshTokenGrant", "build_grants"]
