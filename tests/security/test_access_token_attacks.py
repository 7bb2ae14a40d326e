"""Forged and malformed access tokens presented to ``GET /users/me``, beyond the catalogue.

The JWT rows of the security catalogue (J01-J16: alg none, algorithm confusion with our public
key, tampering, time claims, issuer and audience, kid, key-carrying headers, crit, JWE, size,
shape, encoding, duplicate claims) live in ``tests/security/test_catalogue_jwt.py``; this file
keeps the positive controls and the attacks that are not catalogue rows.

Every forged token is built by ``tests.helpers.Forger`` from raw JSON text and signed with the
test key (or an attacker's key), so nothing in authsvc helps build what it is then asked to
refuse. The positive control proves the forger produces tokens the service accepts, so each
attack test fails if the refusal it checks were removed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi.testclient import TestClient

from tests.helpers import (
    UNKNOWN_USER,
    Forger,
    assert_invalid_token,
    assert_not_authenticated,
    b64url,
    bearer,
    encode_segment,
)


@pytest.fixture
def attacker_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def get_me(client: TestClient) -> Callable[[str], Any]:
    def call(token: str) -> Any:
        return client.get("/users/me", headers=bearer(token))

    return call


# --- controls --------------------------------------------------------------------------------


def test_token_built_by_forger_is_accepted(
    forger: Forger, get_me: Callable[[str], Any], user: dict[str, Any]
) -> None:
    response = get_me(forger.token())
    assert response.status_code == 200, response.text
    assert response.json()["id"] == user["id"]
    assert response.json()["username"] == user["username"]


def test_issued_token_is_accepted(
    client: TestClient, user_headers: dict[str, str], user: dict[str, Any]
) -> None:
    response = client.get("/users/me", headers=user_headers)
    assert response.status_code == 200
    assert response.json()["id"] == user["id"]


def test_token_expired_within_leeway_is_accepted(
    forger: Forger, get_me: Callable[[str], Any]
) -> None:
    now = int(time.time())
    token = forger.token(payload=forger.claims(exp=now - 10, iat=now - 600, nbf=now - 600))
    assert get_me(token).status_code == 200


def test_missing_authorization_header_gets_bare_challenge(client: TestClient) -> None:
    assert_not_authenticated(client.get("/users/me"))


def test_token_in_query_string_is_not_accepted(client: TestClient, forger: Forger) -> None:
    assert_not_authenticated(client.get("/users/me", params={"access_token": forger.token()}))


# --- algorithm confusion -------------------------------------------------------------------


def test_ps256_signed_with_our_key_is_rejected(
    forger: Forger, get_me: Callable[[str], Any]
) -> None:
    signing_input = (
        encode_segment(forger.header(alg="PS256")) + "." + encode_segment(forger.claims())
    )
    signature = forger.private_key.sign(
        signing_input.encode("ascii"),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    assert_invalid_token(get_me(signing_input + "." + b64url(signature)))


def test_token_signed_with_attacker_key_under_our_kid_is_rejected(
    forger: Forger, attacker_key: rsa.RSAPrivateKey, get_me: Callable[[str], Any]
) -> None:
    assert_invalid_token(get_me(forger.token(private_key=attacker_key)))


# --- time claims -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
def test_numeric_date_as_huge_integer_is_rejected_not_a_server_error(
    name: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    # 10**400 is a valid JSON number but cannot be converted to a float.
    assert_invalid_token(get_me(forger.with_claim_text(name, "1" + "0" * 400)))


# --- subject and required claims -------------------------------------------------------------


def test_sub_that_is_not_a_uuid_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    assert_invalid_token(get_me(forger.token(payload=forger.claims(sub="alice"))))


# A missing aud is catalogue row J06 and a missing exp J07 (see test_catalogue_jwt.py).
@pytest.mark.parametrize("claim", ["iss", "sub", "iat", "jti"])
def test_missing_required_claim_is_rejected(
    claim: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    assert_invalid_token(get_me(forger.token(payload=forger.claims(drop=(claim,)))))


def test_sub_of_unknown_user_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    token = forger.token(payload=forger.claims(sub=str(uuid.uuid4())))
    assert_invalid_token(get_me(token), UNKNOWN_USER)


# --- header members --------------------------------------------------------------------------


def test_kid_that_is_not_a_string_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    assert_invalid_token(get_me(forger.token(header=forger.header(kid=[forger.kid]))))


@pytest.mark.parametrize("member", ["kid", "typ"])
def test_missing_kid_or_typ_is_rejected(
    member: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    assert_invalid_token(get_me(forger.token(header=forger.header(drop=(member,)))))


def test_typ_jwt_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    assert_invalid_token(get_me(forger.token(header=forger.header(typ="JWT"))))


@pytest.mark.parametrize(("member", "value"), [("cty", "JWT"), ("zip", "DEF")])
def test_unknown_header_member_is_rejected_even_when_signed_by_us(
    member: str, value: Any, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    assert_invalid_token(get_me(forger.token(header=forger.header(**{member: value}))))


def test_duplicate_header_member_names_are_rejected(
    forger: Forger, get_me: Callable[[str], Any]
) -> None:
    header = json.dumps(forger.header())[:-1] + ', "alg": "none"}'
    assert_invalid_token(get_me(forger.token(header=header)))


# --- the user behind a valid token ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "body", "status"),
    [
        pytest.param("PATCH", {"is_active": False}, 200, id="disabled"),
        pytest.param("DELETE", None, 204, id="deleted"),
    ],
)
def test_valid_token_of_disabled_or_deleted_user_is_rejected(
    method: str,
    body: dict[str, Any] | None,
    status: int,
    client: TestClient,
    user: dict[str, Any],
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    assert client.get("/users/me", headers=user_headers).status_code == 200
    response = client.request(
        method, f"/admin/users/{user['id']}", json=body, headers=admin_headers
    )
    assert response.status_code == status, response.text
    assert_invalid_token(client.get("/users/me", headers=user_headers), UNKNOWN_USER)
