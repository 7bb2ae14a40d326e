"""Discovery documents: the JWKS (RFC 7517 §5) and authorization server metadata (RFC 8414)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jwt as pyjwt
import pytest
from fastapi.testclient import TestClient

from authsvc.app import create_app
from authsvc.config import Settings
from tests.helpers import (
    ISSUER,
    UNREACHABLE_POSTGRES,
    USER_PASSWORD,
    password_login,
    pyjwt_decode,
)

JWKS_URL = "/.well-known/jwks.json"
METADATA_URL = "/.well-known/oauth-authorization-server"
PRIVATE_RSA_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


# --- JWKS ---------------------------------------------------------------------------------


def test_jwks_publishes_one_rsa_signing_key(client: TestClient) -> None:
    response = client.get(JWKS_URL)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    keys = response.json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kty"] == "RSA"
    assert keys[0]["alg"] == "RS256"
    assert keys[0]["use"] == "sig"
    assert keys[0]["e"] == "AQAB"
    assert keys[0]["kid"]


def test_jwks_key_has_only_public_members(client: TestClient) -> None:
    (key,) = client.get(JWKS_URL).json()["keys"]

    assert set(key) == {"kty", "n", "e", "kid", "alg", "use"}
    assert not PRIVATE_RSA_MEMBERS & set(key)


def test_jwks_modulus_is_2048_bit_unpadded_base64url(client: TestClient) -> None:
    (key,) = client.get(JWKS_URL).json()["keys"]

    assert "=" not in key["n"]
    assert "+" not in key["n"]
    assert "/" not in key["n"]
    modulus = pyjwt.algorithms.RSAAlgorithm.from_jwk(key).public_numbers().n  # type: ignore[union-attr]
    assert modulus.bit_length() == 2048


def test_jwks_is_publicly_cacheable_for_five_minutes(client: TestClient) -> None:
    response = client.get(JWKS_URL)

    assert response.headers["cache-control"] == "public, max-age=300"


def test_jwks_kid_matches_issued_token_header(client: TestClient, user: dict[str, Any]) -> None:
    token = password_login(client, "alice", USER_PASSWORD)["access_token"]

    (key,) = client.get(JWKS_URL).json()["keys"]

    assert pyjwt.get_unverified_header(token)["kid"] == key["kid"]


def test_issued_token_verifies_with_published_key_in_independent_library(
    client: TestClient, user: dict[str, Any]
) -> None:
    token = password_login(client, "alice", USER_PASSWORD)["access_token"]
    (key,) = client.get(JWKS_URL).json()["keys"]

    assert pyjwt_decode(token, key)["sub"] == user["id"]


def test_jwks_is_served_while_database_is_down(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(database_url=UNREACHABLE_POSTGRES, db_connect_timeout=1)
    with TestClient(create_app(settings)) as client:
        response = client.get(JWKS_URL)

    assert response.status_code == 200
    assert len(response.json()["keys"]) == 1


def test_hs256_publishes_an_empty_jwks(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jwt_algorithm="HS256", jwt_secret="s" * 32)
    with TestClient(create_app(settings)) as client:
        response = client.get(JWKS_URL)

    assert response.status_code == 200
    assert response.json() == {"keys": []}
    assert "s" * 32 not in response.text


# --- RFC 8414 metadata --------------------------------------------------------------------


def test_metadata_issuer_equals_configured_issuer(client: TestClient) -> None:
    response = client.get(METADATA_URL)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["issuer"] == ISSUER


def test_metadata_issuer_has_no_trailing_slash(
    make_settings: Callable[..., Settings], migrated: None
) -> None:
    with TestClient(create_app(make_settings(issuer=ISSUER + "/"))) as client:
        metadata = client.get(METADATA_URL).json()

    assert metadata["issuer"] == ISSUER
    assert metadata["token_endpoint"] == f"{ISSUER}/oauth2/token"


def test_metadata_points_at_token_endpoint_and_jwks(client: TestClient) -> None:
    metadata = client.get(METADATA_URL).json()

    assert metadata["token_endpoint"] == f"{ISSUER}/oauth2/token"
    assert metadata["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"


def test_metadata_urls_resolve_on_this_server(client: TestClient) -> None:
    metadata = client.get(METADATA_URL).json()

    jwks_path = metadata["jwks_uri"].removeprefix(ISSUER)
    token_path = metadata["token_endpoint"].removeprefix(ISSUER)
    assert client.get(jwks_path).status_code == 200
    assert client.post(token_path, data={"grant_type": "x"}).status_code == 400


def test_metadata_lists_the_three_grants(client: TestClient) -> None:
    assert client.get(METADATA_URL).json()["grant_types_supported"] == [
        "password",
        "refresh_token",
        "client_credentials",
    ]


def test_metadata_lists_builtin_admin_scope(client: TestClient) -> None:
    assert client.get(METADATA_URL).json()["scopes_supported"] == ["admin"]


def test_metadata_lists_scope_created_through_admin_api(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    created = client.post(
        "/admin/scopes",
        json={"name": "reports:read", "description": "Read reports"},
        headers=admin_headers,
    )
    assert created.status_code == 201

    scopes = client.get(METADATA_URL).json()["scopes_supported"]

    assert "admin" in scopes
    assert "reports:read" in scopes


def test_metadata_lists_client_authentication_methods(client: TestClient) -> None:
    metadata = client.get(METADATA_URL).json()

    assert metadata["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "none",
    ]
    assert metadata["introspection_endpoint"] == f"{metadata['issuer']}/oauth2/introspect"
    assert metadata["introspection_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert metadata["revocation_endpoint"] == f"{metadata['issuer']}/oauth2/revoke"
    assert metadata["revocation_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "none",
    ]


def test_metadata_declares_no_response_types(client: TestClient) -> None:
    assert client.get(METADATA_URL).json()["response_types_supported"] == []


def test_metadata_has_the_documented_members(client: TestClient) -> None:
    metadata = client.get(METADATA_URL).json()

    assert {
        "issuer",
        "token_endpoint",
        "jwks_uri",
        "grant_types_supported",
        "scopes_supported",
        "token_endpoint_auth_methods_supported",
        "response_types_supported",
    } <= set(metadata)


def test_metadata_is_publicly_cacheable_for_a_minute(client: TestClient) -> None:
    assert client.get(METADATA_URL).headers["cache-control"] == "public, max-age=60"


@pytest.mark.parametrize("url", [JWKS_URL, METADATA_URL])
def test_discovery_documents_need_no_authentication(client: TestClient, url: str) -> None:
    response = client.get(url)

    assert response.status_code == 200
    assert "www-authenticate" not in response.headers
