"""Forged and malformed access tokens presented to ``GET /users/me``.

Every forged token is built by ``tests.helpers.Forger`` from raw JSON text and signed with the
test key (or an attacker's key), so nothing in authsvc helps build what it is then asked to
refuse. The
positive control proves the forger produces tokens the service accepts, so each attack test
fails if the refusal it checks were removed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi.testclient import TestClient

from authsvc.security.keys import SigningKey, public_jwk, thumbprint
from tests.helpers import (
    EXPIRED_TOKEN,
    UNKNOWN_USER,
    Forger,
    access_token_for,
    assert_invalid_token,
    assert_not_authenticated,
    b64url,
    b64url_decode,
    bearer,
    encode_segment,
    rs256_sign,
)


@pytest.fixture
def attacker_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def get_me(client: TestClient) -> Callable[[str], Any]:
    def call(token: str) -> Any:
        return client.get("/users/me", headers=bearer(token))

    return call


@pytest.fixture
def issued_token(client: TestClient, user: dict[str, Any]) -> str:
    """A token the token endpoint issued to ``user``, to be tampered with."""
    return access_token_for(client, user)


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


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_with_empty_signature_is_rejected(
    alg: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    token = encode_segment(forger.header(alg=alg)) + "." + encode_segment(forger.claims()) + "."
    assert_invalid_token(get_me(token))


@pytest.mark.parametrize("alg", ["none", "NONE"])
def test_alg_none_with_valid_rs256_signature_is_rejected(
    alg: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    assert_invalid_token(get_me(forger.token(header=forger.header(alg=alg))))


def _public_key_bytes(signing_key: SigningKey, form: str) -> bytes:
    public_key = signing_key.public_key
    assert public_key is not None
    encodings = {
        "spki_pem": (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "pkcs1_pem": (serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        "spki_der": (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    }
    encoding, public_format = encodings[form]
    return public_key.public_bytes(encoding, public_format)


@pytest.mark.parametrize("form", ["spki_pem", "pkcs1_pem", "spki_der"])
def test_hs256_signed_with_public_key_is_rejected(
    form: str, forger: Forger, signing_key: SigningKey, get_me: Callable[[str], Any]
) -> None:
    secret = _public_key_bytes(signing_key, form)
    signing_input = (
        encode_segment(forger.header(alg="HS256")) + "." + encode_segment(forger.claims())
    )
    signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    assert_invalid_token(get_me(signing_input + "." + b64url(signature)))


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


# --- integrity -------------------------------------------------------------------------------


def test_tampered_payload_is_rejected(issued_token: str, get_me: Callable[[str], Any]) -> None:
    header, payload, signature = issued_token.split(".")
    claims = json.loads(b64url_decode(payload))
    claims["scope"] = "admin"
    assert_invalid_token(get_me(f"{header}.{encode_segment(claims)}.{signature}"))


def _flip_middle_bit(signature: bytes) -> bytes:
    flipped = bytearray(signature)
    flipped[len(flipped) // 2] ^= 0x01
    return bytes(flipped)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(_flip_middle_bit, id="tampered"),
        pytest.param(lambda signature: b"", id="empty"),
        pytest.param(lambda signature: signature[:-1], id="truncated"),
    ],
)
def test_altered_signature_is_rejected(
    mangle: Callable[[bytes], bytes], issued_token: str, get_me: Callable[[str], Any]
) -> None:
    signing_input, signature = issued_token.rsplit(".", 1)
    assert_invalid_token(get_me(signing_input + "." + b64url(mangle(b64url_decode(signature)))))


# --- time claims -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expired_ago", "issued_ago"),
    [pytest.param(3600, 7200, id="an-hour-ago"), pytest.param(40, 600, id="beyond-leeway")],
)
def test_expired_token_is_rejected_as_expired(
    expired_ago: int, issued_ago: int, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    now = int(time.time())
    payload = forger.claims(exp=now - expired_ago, iat=now - issued_ago, nbf=now - issued_ago)
    assert_invalid_token(get_me(forger.token(payload=payload)), EXPIRED_TOKEN)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_nbf_or_iat_in_the_future_beyond_leeway_is_rejected(
    claim: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    now = int(time.time())
    payload = forger.claims(nbf=now, iat=now, exp=now + 900) | {claim: now + 120}
    assert_invalid_token(get_me(forger.token(payload=payload)))


@pytest.mark.parametrize(
    "json_text",
    [
        pytest.param('"9999999999"', id="string"),
        pytest.param("1e308", id="1e308"),
        pytest.param("null", id="null"),
        pytest.param("true", id="boolean"),
        pytest.param("NaN", id="nan"),
        pytest.param("Infinity", id="infinity"),
        pytest.param("-1", id="negative"),
        pytest.param(str(2**53), id="2**53"),
        pytest.param("[9999999999]", id="array"),
    ],
)
def test_exp_that_is_not_a_valid_numeric_date_is_rejected(
    json_text: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    assert_invalid_token(get_me(forger.with_claim_text("exp", json_text)))


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
def test_numeric_date_as_huge_integer_is_rejected_not_a_server_error(
    name: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    # 10**400 is a valid JSON number but cannot be converted to a float.
    assert_invalid_token(get_me(forger.with_claim_text(name, "1" + "0" * 400)))


# --- issuer, audience, required claims -------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"iss": "https://evil.example"}, id="wrong-issuer"),
        pytest.param({"aud": "some-other-api"}, id="wrong-audience"),
        pytest.param({"aud": ["some-other-api", "another"]}, id="audience-list-without-ours"),
    ],
)
def test_token_from_another_issuer_or_for_another_audience_is_rejected(
    claims: dict[str, Any], forger: Forger, get_me: Callable[[str], Any]
) -> None:
    assert_invalid_token(get_me(forger.token(payload=forger.claims(**claims))))


def test_sub_that_is_not_a_uuid_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    assert_invalid_token(get_me(forger.token(payload=forger.claims(sub="alice"))))


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "iat", "jti"])
def test_missing_required_claim_is_rejected(
    claim: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    assert_invalid_token(get_me(forger.token(payload=forger.claims(drop=(claim,)))))


def test_sub_of_unknown_user_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    token = forger.token(payload=forger.claims(sub=str(uuid.uuid4())))
    assert_invalid_token(get_me(token), UNKNOWN_USER)


def test_duplicate_claim_names_in_payload_are_rejected(
    forger: Forger, admin: dict[str, Any], get_me: Callable[[str], Any]
) -> None:
    # Parsers that keep the first member see alice; parsers that keep the last see the admin.
    payload = json.dumps(forger.claims())[:-1] + f', "sub": "{admin["id"]}"' + "}"
    assert_invalid_token(get_me(forger.token(payload=payload)))


# --- header members --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kid",
    [
        pytest.param("no-such-key", id="unknown"),
        pytest.param("../../dev/null", id="path-traversal"),
        pytest.param("x' UNION SELECT 'secret' --", id="sql-injection"),
    ],
)
def test_kid_that_names_no_key_of_ours_is_rejected(
    kid: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    assert_invalid_token(get_me(forger.token(header=forger.header(kid=kid))))


def test_kid_that_is_not_a_string_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    assert_invalid_token(get_me(forger.token(header=forger.header(kid=[forger.kid]))))


@pytest.mark.parametrize("member", ["kid", "typ"])
def test_missing_kid_or_typ_is_rejected(
    member: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    assert_invalid_token(get_me(forger.token(header=forger.header(drop=(member,)))))


def test_typ_jwt_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    assert_invalid_token(get_me(forger.token(header=forger.header(typ="JWT"))))


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("crit", ["exp"]),
        ("jku", "https://evil.example/jwks.json"),
        ("x5u", "https://evil.example/cert.pem"),
        ("jwk", {"kty": "RSA", "e": "AQAB", "n": "AQAB"}),
        ("x5c", ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
        ("cty", "JWT"),
        ("zip", "DEF"),
    ],
)
def test_key_selecting_or_unknown_header_member_is_rejected_even_when_signed_by_us(
    member: str, value: Any, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    assert_invalid_token(get_me(forger.token(header=forger.header(**{member: value}))))


def test_embedded_attacker_jwk_is_rejected(
    forger: Forger, attacker_key: rsa.RSAPrivateKey, get_me: Callable[[str], Any]
) -> None:
    jwk = public_jwk(attacker_key.public_key())
    header = forger.header(kid=thumbprint(jwk), jwk=jwk)
    assert_invalid_token(get_me(forger.token(header=header, private_key=attacker_key)))


def test_embedded_attacker_jwk_under_our_kid_is_rejected(
    forger: Forger, attacker_key: rsa.RSAPrivateKey, get_me: Callable[[str], Any]
) -> None:
    header = forger.header(jwk=public_jwk(attacker_key.public_key()))
    assert_invalid_token(get_me(forger.token(header=header, private_key=attacker_key)))


def test_duplicate_header_member_names_are_rejected(
    forger: Forger, get_me: Callable[[str], Any]
) -> None:
    header = json.dumps(forger.header())[:-1] + ', "alg": "none"}'
    assert_invalid_token(get_me(forger.token(header=header)))


@pytest.mark.parametrize(
    "header_text",
    [
        pytest.param('["RS256"]', id="array"),
        pytest.param('"RS256"', id="string"),
        pytest.param("123", id="number"),
        pytest.param("null", id="null"),
        pytest.param("{not json", id="not-json"),
    ],
)
def test_header_that_is_not_a_json_object_is_rejected(
    header_text: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    assert_invalid_token(get_me(forger.token(header=header_text)))


def test_invalid_utf8_in_header_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    header = json.dumps(forger.header()).encode("ascii")[:-1] + b', "x": "\xff\xfe"}'
    assert_invalid_token(get_me(forger.token(header=header)))


def test_invalid_utf8_in_header_value_of_kid_is_rejected(
    forger: Forger, get_me: Callable[[str], Any]
) -> None:
    header = b'{"alg": "RS256", "kid": "' + forger.kid.encode() + b'\xc3", "typ": "at+jwt"}'
    assert_invalid_token(get_me(forger.token(header=header)))


# --- shape -----------------------------------------------------------------------------------


def test_jwe_shaped_five_segment_token_is_rejected(get_me: Callable[[str], Any]) -> None:
    header = encode_segment({"alg": "RSA-OAEP", "enc": "A256GCM", "typ": "at+jwt"})
    token = ".".join([header, b64url(b"k" * 256), b64url(b"i" * 12), b64url(b"c" * 64), "tag"])
    assert_invalid_token(get_me(token))


def test_two_segment_token_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    assert_invalid_token(get_me(forger.token().rsplit(".", 1)[0]))


def test_four_segment_token_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    assert_invalid_token(get_me(forger.token() + "." + b64url(b"extra")))


def test_token_over_8_kib_is_rejected_even_when_correctly_signed(
    forger: Forger, get_me: Callable[[str], Any]
) -> None:
    token = forger.token(payload=forger.claims(padding="p" * 6500))
    assert len(token) > 8192
    assert_invalid_token(get_me(token))


def test_one_megabyte_token_is_rejected(get_me: Callable[[str], Any]) -> None:
    token = "a" * (1024 * 1024 - 4) + ".b.c"
    assert_invalid_token(get_me(token))


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: s[:10] + "+" + s[11:], id="plus"),
        pytest.param(lambda s: s[:10] + "/" + s[11:], id="slash"),
        pytest.param(lambda s: s + "==", id="padding"),
        pytest.param(lambda s: s[:10] + "*" + s[11:], id="asterisk"),
        pytest.param(lambda s: s[:10] + "%2E" + s[11:], id="percent"),
        pytest.param(lambda s: s[:10] + "~" + s[11:], id="tilde"),
    ],
)
def test_non_base64url_characters_are_rejected(
    mangle: Callable[[str], str], forger: Forger, get_me: Callable[[str], Any]
) -> None:
    header, payload, signature = forger.token().split(".")
    assert_invalid_token(get_me(f"{header}.{payload}.{mangle(signature)}"))


def test_padded_payload_segment_is_rejected_even_when_correctly_signed(
    forger: Forger, get_me: Callable[[str], Any]
) -> None:
    # Pick a filler length whose payload needs base64 padding, then sign the padded form.
    for filler in range(3):
        payload = json.dumps(forger.claims(filler="f" * filler)).encode("utf-8")
        if len(payload) % 3:
            break
    padded = base64.urlsafe_b64encode(payload).decode("ascii")
    assert padded.endswith("=")
    signing_input = encode_segment(forger.header()) + "." + padded
    token = signing_input + "." + rs256_sign(forger.private_key, signing_input)
    assert_invalid_token(get_me(token))


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
