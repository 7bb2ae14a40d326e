"""Tokens from the token endpoint verify with PyJWT, an implementation that shares no code with us.

PyJWT gets only what a downstream service would have: the published JWKS, the issuer and the
audience.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from tests.helpers import AUDIENCE, ISSUER, access_token_for, password_login, pyjwt_decode


@pytest.fixture
def token(client: TestClient, user: dict[str, Any]) -> str:
    return access_token_for(client, user)


@pytest.fixture
def published_jwk(client: TestClient) -> dict[str, Any]:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys: list[dict[str, Any]] = response.json()["keys"]
    assert len(keys) == 1
    return keys[0]


def test_issued_token_verifies_with_pyjwt_and_published_jwks(
    token: str, published_jwk: dict[str, Any], user: dict[str, Any]
) -> None:
    claims = pyjwt_decode(token, published_jwk)
    assert claims["sub"] == user["id"]
    assert claims["preferred_username"] == user["username"]
    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE
    assert claims["client_id"] == "public"
    assert isinstance(claims["scope"], str)


def test_issued_token_header_is_rs256_at_jwt_with_jwks_kid(
    token: str, published_jwk: dict[str, Any]
) -> None:
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "kid": published_jwk["kid"], "typ": "at+jwt"}


def test_published_jwk_is_public_rsa_signing_key(published_jwk: dict[str, Any]) -> None:
    assert published_jwk["kty"] == "RSA"
    assert published_jwk["alg"] == "RS256"
    assert published_jwk["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(published_jwk)
    assert jwt.PyJWK(published_jwk).key_id == published_jwk["kid"]


def test_issued_token_time_claims_are_integers_consistent_with_expires_in(
    client: TestClient, user: dict[str, Any], published_jwk: dict[str, Any]
) -> None:
    before = int(time.time())
    body = password_login(client, user["username"], user["password"])
    claims = pyjwt_decode(body["access_token"], published_jwk)
    assert all(isinstance(claims[name], int) for name in ("exp", "iat", "nbf"))
    assert before <= claims["iat"] <= int(time.time())
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] - claims["iat"] == body["expires_in"]


def test_issued_tokens_have_distinct_jti(
    client: TestClient, user: dict[str, Any], published_jwk: dict[str, Any]
) -> None:
    tokens = [access_token_for(client, user) for _ in range(3)]
    assert len({pyjwt_decode(t, published_jwk)["jti"] for t in tokens}) == 3


def test_pyjwt_rejects_issued_token_for_another_audience(
    token: str, published_jwk: dict[str, Any]
) -> None:
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, jwt.PyJWK(published_jwk).key, algorithms=["RS256"], audience="other-api")


def test_pyjwt_rejects_tampered_issued_token(token: str, published_jwk: dict[str, Any]) -> None:
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}"
    with pytest.raises(jwt.InvalidTokenError):
        pyjwt_decode(f"{tampered}.{signature}", published_jwk)
