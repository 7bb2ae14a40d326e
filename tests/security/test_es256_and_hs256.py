"""The ES256 and HS256 configurations: tokens work, and tokens of another algorithm do not.

The catalogue rows run against these configurations (J01 alg none on HS256, J03 tampering on
ES256, J16 r = s = 0 on ES256) are in ``tests/security/test_catalogue_jwt.py``.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from authsvc.security.keys import SigningKey, load_keys
from tests.helpers import (
    AUDIENCE,
    HS256_SECRET,
    ISSUER,
    Forger,
    assert_invalid_token,
    b64url,
    b64url_decode,
    bearer,
    encode_segment,
    pyjwt_decode,
)

# The order n of the P-256 group (SEC 2, §2.4.2).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def get_me(client: TestClient, token: str) -> Any:
    return client.get("/users/me", headers=bearer(token))


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
    assert pyjwt_decode(es256_token, jwk, algorithm="ES256")["sub"] == user["id"]


def test_es256_signature_with_r_and_s_equal_to_the_group_order_is_rejected(
    es256_client: TestClient, es256_token: str
) -> None:
    # r = s = n is out of range [1, n-1]; r = s = 0 is catalogue row J16 (test_catalogue_jwt.py).
    signing_input = es256_token.rsplit(".", 1)[0]
    signature = P256_ORDER.to_bytes(32, "big") * 2
    assert_invalid_token(get_me(es256_client, signing_input + "." + b64url(signature)))


def test_es256_der_encoded_signature_is_rejected(
    es256_client: TestClient, es256_key: SigningKey, forger: Forger
) -> None:
    # RFC 7518 §3.4 requires the raw R || S form; a DER signature by the right key is refused.
    assert isinstance(es256_key.private_key, ec.EllipticCurvePrivateKey)
    header = forger.header(alg="ES256", kid=es256_key.kid)
    signing_input = encode_segment(header) + "." + encode_segment(forger.claims())
    der = es256_key.private_key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    assert_invalid_token(get_me(es256_client, signing_input + "." + b64url(der)))


def test_rs256_token_under_es256_kid_is_rejected_by_es256_app(
    es256_client: TestClient, es256_key: SigningKey, forger: Forger
) -> None:
    token = forger.token(header=forger.header(kid=es256_key.kid))
    assert_invalid_token(get_me(es256_client, token))


def test_es256_token_from_another_key_under_our_kid_is_rejected(
    es256_client: TestClient, es256_key: SigningKey, forger: Forger
) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    header = forger.header(alg="ES256", kid=es256_key.kid)
    token = jwt.encode(forger.claims(), attacker, algorithm="ES256", headers=header)
    assert_invalid_token(get_me(es256_client, token))


# --- HS256 -----------------------------------------------------------------------------------


def test_hs256_jwks_is_empty(hs256_client: TestClient) -> None:
    response = hs256_client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.json() == {"keys": []}


def test_hs256_login_token_is_accepted(
    hs256_client: TestClient, hs256_token: str, user: dict[str, Any]
) -> None:
    assert jwt.get_unverified_header(hs256_token)["alg"] == "HS256"
    assert jwt.get_unverified_header(hs256_token)["typ"] == "at+jwt"
    response = get_me(hs256_client, hs256_token)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == user["id"]


def test_hs256_token_verifies_with_the_shared_secret(
    hs256_token: str, user: dict[str, Any]
) -> None:
    claims = jwt.decode(
        hs256_token, HS256_SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER
    )
    assert claims["sub"] == user["id"]


def test_hs256_kid_does_not_reveal_the_secret_hash(hs256_token: str) -> None:
    kid = jwt.get_unverified_header(hs256_token)["kid"]
    digest = hashlib.sha256(HS256_SECRET.encode()).digest()
    assert kid not in {b64url(digest), b64url(digest[:12]), digest.hex()}


def test_hs256_token_signed_with_another_secret_is_rejected(
    hs256_client: TestClient, hs256_token: str
) -> None:
    signing_input = hs256_token.rsplit(".", 1)[0]
    forged = hmac.new(b"y" * 40, signing_input.encode("ascii"), hashlib.sha256).digest()
    assert_invalid_token(get_me(hs256_client, signing_input + "." + b64url(forged)))


# --- either app ------------------------------------------------------------------------------


@pytest.mark.parametrize("app_client", ["es256_client", "hs256_client"])
def test_rs256_token_is_rejected_by_an_app_configured_for_another_algorithm(
    app_client: str, request: pytest.FixtureRequest, forger: Forger
) -> None:
    client: TestClient = request.getfixturevalue(app_client)
    assert_invalid_token(get_me(client, forger.token()))
