"""The ES256 and HS256 configurations: tokens work, and tokens of another algorithm do not."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from fastapi.testclient import TestClient

from authsvc.app import create_app
from authsvc.config import Settings
from authsvc.security.keys import load_keys
from tests.conftest import AUDIENCE, ISSUER, password_login

INVALID_CHALLENGE = 'Bearer error="invalid_token", error_description="The access token is invalid"'
INVALID_BODY = {"error": "invalid_token", "error_description": "The access token is invalid"}
# The order n of the P-256 group (SEC 2, §2.4.2).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def encode_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value).encode("utf-8"))


def claims_for(user: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "sub": user["id"],
        "aud": AUDIENCE,
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": uuid.uuid4().hex,
        "client_id": "public",
        "scope": "",
        "preferred_username": user["username"],
    }


def get_me(client: TestClient, token: str) -> Any:
    return client.get("/users/me", headers={"Authorization": f"Bearer {token}"})


def assert_refused(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == INVALID_BODY
    assert response.headers["www-authenticate"] == INVALID_CHALLENGE
    assert response.headers["cache-control"] == "no-store"


@pytest.fixture
def es256_keys_dir(tmp_path: Path) -> Path:
    path = tmp_path / "es256-keys"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def es256_settings(make_settings: Callable[..., Settings], es256_keys_dir: Path) -> Settings:
    return make_settings(jwt_algorithm="ES256", keys_dir=es256_keys_dir)


@pytest.fixture
def es256_client(es256_settings: Settings, migrated: None) -> Iterator[TestClient]:
    with TestClient(create_app(es256_settings)) as client:
        yield client


@pytest.fixture
def es256_token(es256_client: TestClient, user: dict[str, Any]) -> str:
    token: str = password_login(es256_client, user["username"], user["password"])["access_token"]
    return token


@pytest.fixture
def hs256_client(make_settings: Callable[..., Settings], migrated: None) -> Iterator[TestClient]:
    settings = make_settings(jwt_algorithm="HS256", jwt_secret="x" * 40)
    with TestClient(create_app(settings)) as client:
        yield client


# --- ES256 -----------------------------------------------------------------------------------


def test_es256_app_generates_a_p256_key_in_an_empty_keys_dir(
    es256_client: TestClient, es256_keys_dir: Path
) -> None:
    keys = load_keys(es256_keys_dir)
    assert len(keys) == 1
    assert keys[0].algorithm == "ES256"
    jwks = es256_client.get("/.well-known/jwks.json").json()
    assert [(k["kid"], k["kty"], k["crv"], k["alg"]) for k in jwks["keys"]] == [
        (keys[0].kid, "EC", "P-256", "ES256")
    ]
    assert "d" not in jwks["keys"][0]


def test_es256_login_token_is_accepted(
    es256_client: TestClient, es256_token: str, user: dict[str, Any]
) -> None:
    response = get_me(es256_client, es256_token)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == user["id"]


def test_es256_token_has_es256_header_and_raw_64_byte_signature(
    es256_client: TestClient, es256_token: str
) -> None:
    header = jwt.get_unverified_header(es256_token)
    jwks = es256_client.get("/.well-known/jwks.json").json()
    assert header == {"alg": "ES256", "kid": jwks["keys"][0]["kid"], "typ": "at+jwt"}
    assert len(b64url_decode(es256_token.rsplit(".", 1)[1])) == 64


def test_es256_token_verifies_with_pyjwt(
    es256_client: TestClient, es256_token: str, user: dict[str, Any]
) -> None:
    jwk = es256_client.get("/.well-known/jwks.json").json()["keys"][0]
    claims = jwt.decode(
        es256_token,
        jwt.PyJWK(jwk).key,
        algorithms=["ES256"],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    assert claims["sub"] == user["id"]


def test_es256_signature_with_r_and_s_zero_is_rejected(
    es256_client: TestClient, es256_token: str
) -> None:
    signing_input = es256_token.rsplit(".", 1)[0]
    assert_refused(get_me(es256_client, signing_input + "." + b64url(bytes(64))))


def test_es256_signature_with_r_and_s_equal_to_group_order_is_rejected(
    es256_client: TestClient, es256_token: str
) -> None:
    order = P256_ORDER.to_bytes(32, "big")
    signing_input = es256_token.rsplit(".", 1)[0]
    assert_refused(get_me(es256_client, signing_input + "." + b64url(order + order)))


def test_es256_der_encoded_signature_is_rejected(
    es256_client: TestClient, es256_keys_dir: Path, user: dict[str, Any]
) -> None:
    # RFC 7518 §3.4 requires the raw R || S form; a DER signature by the right key is refused.
    key = load_keys(es256_keys_dir)[0]
    assert isinstance(key.private_key, ec.EllipticCurvePrivateKey)
    header = {"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}
    signing_input = encode_json(header) + "." + encode_json(claims_for(user))
    der = key.private_key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    assert_refused(get_me(es256_client, signing_input + "." + b64url(der)))


def test_es256_signature_over_other_claims_is_rejected(
    es256_client: TestClient, es256_token: str, user: dict[str, Any]
) -> None:
    header, _, signature = es256_token.split(".")
    tampered = claims_for(user) | {"scope": "admin"}
    assert_refused(get_me(es256_client, f"{header}.{encode_json(tampered)}.{signature}"))


def test_rs256_token_is_rejected_by_es256_app(
    es256_client: TestClient, keys_dir: Path, user: dict[str, Any]
) -> None:
    rsa_key = load_keys(keys_dir)[0]
    assert isinstance(rsa_key.private_key, rsa.RSAPrivateKey)
    header = {"alg": "RS256", "kid": rsa_key.kid, "typ": "at+jwt"}
    signing_input = encode_json(header) + "." + encode_json(claims_for(user))
    signature = rsa_key.private_key.sign(
        signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
    )
    assert_refused(get_me(es256_client, signing_input + "." + b64url(signature)))


def test_rs256_token_under_es256_kid_is_rejected_by_es256_app(
    es256_client: TestClient, es256_keys_dir: Path, keys_dir: Path, user: dict[str, Any]
) -> None:
    rsa_key = load_keys(keys_dir)[0]
    assert isinstance(rsa_key.private_key, rsa.RSAPrivateKey)
    header = {"alg": "RS256", "kid": load_keys(es256_keys_dir)[0].kid, "typ": "at+jwt"}
    signing_input = encode_json(header) + "." + encode_json(claims_for(user))
    signature = rsa_key.private_key.sign(
        signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
    )
    assert_refused(get_me(es256_client, signing_input + "." + b64url(signature)))


def test_es256_token_from_another_key_under_our_kid_is_rejected(
    es256_client: TestClient, es256_keys_dir: Path, user: dict[str, Any]
) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    header = {"alg": "ES256", "kid": load_keys(es256_keys_dir)[0].kid, "typ": "at+jwt"}
    token = jwt.encode(claims_for(user), attacker, algorithm="ES256", headers=header)
    assert_refused(get_me(es256_client, token))


# --- HS256 -----------------------------------------------------------------------------------


def test_hs256_jwks_is_empty(hs256_client: TestClient) -> None:
    response = hs256_client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.json() == {"keys": []}


def test_hs256_login_token_is_accepted(hs256_client: TestClient, user: dict[str, Any]) -> None:
    token = password_login(hs256_client, user["username"], user["password"])["access_token"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    response = get_me(hs256_client, token)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == user["id"]


def test_hs256_token_verifies_with_the_shared_secret(
    hs256_client: TestClient, user: dict[str, Any]
) -> None:
    token = password_login(hs256_client, user["username"], user["password"])["access_token"]
    claims = jwt.decode(token, "x" * 40, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert claims["sub"] == user["id"]


def test_hs256_kid_does_not_reveal_the_secret_hash(
    hs256_client: TestClient, user: dict[str, Any]
) -> None:
    token = password_login(hs256_client, user["username"], user["password"])["access_token"]
    kid = jwt.get_unverified_header(token)["kid"]
    digest = hashlib.sha256(b"x" * 40).digest()
    assert kid not in {b64url(digest), b64url(digest[:12]), digest.hex()}


def test_hs256_token_signed_with_another_secret_is_rejected(
    hs256_client: TestClient, user: dict[str, Any]
) -> None:
    token = password_login(hs256_client, user["username"], user["password"])["access_token"]
    signing_input = token.rsplit(".", 1)[0]
    forged = hmac.new(b"y" * 40, signing_input.encode("ascii"), hashlib.sha256).digest()
    assert_refused(get_me(hs256_client, signing_input + "." + b64url(forged)))


def test_rs256_token_is_rejected_by_hs256_app(
    hs256_client: TestClient, keys_dir: Path, user: dict[str, Any]
) -> None:
    rsa_key = load_keys(keys_dir)[0]
    assert isinstance(rsa_key.private_key, rsa.RSAPrivateKey)
    header = {"alg": "RS256", "kid": rsa_key.kid, "typ": "at+jwt"}
    signing_input = encode_json(header) + "." + encode_json(claims_for(user))
    signature = rsa_key.private_key.sign(
        signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
    )
    assert_refused(get_me(hs256_client, signing_input + "." + b64url(signature)))


def test_alg_none_is_rejected_by_hs256_app(hs256_client: TestClient, user: dict[str, Any]) -> None:
    token = password_login(hs256_client, user["username"], user["password"])["access_token"]
    header = jwt.get_unverified_header(token) | {"alg": "none"}
    assert_refused(get_me(hs256_client, encode_json(header) + "." + token.split(".")[1] + "."))
