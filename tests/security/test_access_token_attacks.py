"""Forged and malformed access tokens presented to ``GET /users/me``.

Every forged token is built here from raw JSON text and signed with the test key (or an
attacker's key), so nothing in authsvc helps build what it is then asked to refuse. The
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
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi.testclient import TestClient

from authsvc.security.keys import SigningKey, load_keys, public_jwk, thumbprint
from tests.conftest import AUDIENCE, ISSUER, password_login

INVALID_CHALLENGE = 'Bearer error="invalid_token", error_description="The access token is invalid"'
EXPIRED_CHALLENGE = 'Bearer error="invalid_token", error_description="The access token expired"'
USER_GONE_CHALLENGE = (
    'Bearer error="invalid_token", error_description="The user is unknown or disabled"'
)
INVALID_BODY = {"error": "invalid_token", "error_description": "The access token is invalid"}
EXPIRED_BODY = {"error": "invalid_token", "error_description": "The access token expired"}
USER_GONE_BODY = {"error": "invalid_token", "error_description": "The user is unknown or disabled"}

JsonText = str | bytes | dict[str, Any] | list[Any]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def encode_segment(value: JsonText) -> str:
    """Raw bytes or JSON text are encoded as given; dicts and lists are dumped first."""
    if isinstance(value, bytes):
        return b64url(value)
    if isinstance(value, str):
        return b64url(value.encode("utf-8"))
    return b64url(json.dumps(value).encode("utf-8"))


def rs256_sign(private_key: rsa.RSAPrivateKey, signing_input: str) -> str:
    signature = private_key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return b64url(signature)


class Forger:
    """Builds RS256 tokens for one user from arbitrary header and payload text."""

    def __init__(self, key: SigningKey, user: dict[str, Any]) -> None:
        assert isinstance(key.private_key, rsa.RSAPrivateKey)
        self.private_key: rsa.RSAPrivateKey = key.private_key
        self.kid = key.kid
        self.user = user

    def header(self, **overrides: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": "RS256", "kid": self.kid, "typ": "at+jwt"}
        header.update(overrides)
        return header

    def claims(self, *, drop: tuple[str, ...] = (), **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": self.user["id"],
            "aud": AUDIENCE,
            "exp": now + 600,
            "iat": now,
            "nbf": now,
            "jti": uuid.uuid4().hex,
            "client_id": "public",
            "scope": "",
            "preferred_username": self.user["username"],
        }
        claims.update(overrides)
        for name in drop:
            del claims[name]
        return claims

    def token(
        self,
        header: JsonText | None = None,
        payload: JsonText | None = None,
        *,
        private_key: rsa.RSAPrivateKey | None = None,
    ) -> str:
        signing_input = (
            encode_segment(self.header() if header is None else header)
            + "."
            + encode_segment(self.claims() if payload is None else payload)
        )
        return signing_input + "." + rs256_sign(private_key or self.private_key, signing_input)

    def with_claim_text(self, name: str, json_text: str) -> str:
        """A signed token whose claim ``name`` is the literal JSON text given."""
        claims = self.claims(drop=(name,))
        payload = json.dumps(claims)[:-1] + f', "{name}": {json_text}' + "}"
        return self.token(payload=payload)


@pytest.fixture
def signing_key(keys_dir: Path) -> SigningKey:
    keys = load_keys(keys_dir)
    assert len(keys) == 1
    return keys[0]


@pytest.fixture
def forger(signing_key: SigningKey, user: dict[str, Any]) -> Forger:
    return Forger(signing_key, user)


@pytest.fixture
def attacker_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def get_me(client: TestClient) -> Callable[[str], Any]:
    def call(token: str) -> Any:
        return client.get("/users/me", headers={"Authorization": f"Bearer {token}"})

    return call


def assert_refused(
    response: Any,
    body: dict[str, str] = INVALID_BODY,
    challenge: str = INVALID_CHALLENGE,
) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == body
    assert response.headers["www-authenticate"] == challenge
    assert response.headers["cache-control"] == "no-store"


def _signature_bytes(token: str) -> bytes:
    segment = token.rsplit(".", 1)[1]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


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
    response = client.get("/users/me")
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["cache-control"] == "no-store"


def test_token_in_query_string_is_not_accepted(client: TestClient, forger: Forger) -> None:
    response = client.get("/users/me", params={"access_token": forger.token()})
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}
    assert response.headers["www-authenticate"] == "Bearer"


# --- algorithm confusion -------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_with_empty_signature_is_rejected(
    alg: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    token = encode_segment(forger.header(alg=alg)) + "." + encode_segment(forger.claims()) + "."
    assert_refused(get_me(token))


@pytest.mark.parametrize("alg", ["none", "NONE"])
def test_alg_none_with_valid_rs256_signature_is_rejected(
    alg: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    assert_refused(get_me(forger.token(header=forger.header(alg=alg))))


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
    assert_refused(get_me(signing_input + "." + b64url(signature)))


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
    assert_refused(get_me(signing_input + "." + b64url(signature)))


def test_token_signed_with_attacker_key_under_our_kid_is_rejected(
    forger: Forger, attacker_key: rsa.RSAPrivateKey, get_me: Callable[[str], Any]
) -> None:
    assert_refused(get_me(forger.token(private_key=attacker_key)))


# --- integrity -------------------------------------------------------------------------------


def test_tampered_payload_is_rejected(
    client: TestClient, user: dict[str, Any], get_me: Callable[[str], Any]
) -> None:
    token = password_login(client, user["username"], user["password"])["access_token"]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "admin"
    assert_refused(get_me(f"{header}.{encode_segment(claims)}.{signature}"))


def test_tampered_signature_is_rejected(
    client: TestClient, user: dict[str, Any], get_me: Callable[[str], Any]
) -> None:
    token = password_login(client, user["username"], user["password"])["access_token"]
    signature = bytearray(_signature_bytes(token))
    signature[len(signature) // 2] ^= 0x01
    signing_input = token.rsplit(".", 1)[0]
    assert_refused(get_me(signing_input + "." + b64url(bytes(signature))))


def test_empty_signature_is_rejected(
    client: TestClient, user: dict[str, Any], get_me: Callable[[str], Any]
) -> None:
    token = password_login(client, user["username"], user["password"])["access_token"]
    assert_refused(get_me(token.rsplit(".", 1)[0] + "."))


def test_truncated_signature_is_rejected(
    client: TestClient, user: dict[str, Any], get_me: Callable[[str], Any]
) -> None:
    token = password_login(client, user["username"], user["password"])["access_token"]
    signing_input = token.rsplit(".", 1)[0]
    assert_refused(get_me(signing_input + "." + b64url(_signature_bytes(token)[:-1])))


# --- time claims -----------------------------------------------------------------------------


def test_expired_token_is_rejected_as_expired(forger: Forger, get_me: Callable[[str], Any]) -> None:
    now = int(time.time())
    token = forger.token(payload=forger.claims(exp=now - 3600, iat=now - 7200, nbf=now - 7200))
    assert_refused(get_me(token), EXPIRED_BODY, EXPIRED_CHALLENGE)


def test_token_expired_beyond_leeway_is_rejected_as_expired(
    forger: Forger, get_me: Callable[[str], Any]
) -> None:
    now = int(time.time())
    token = forger.token(payload=forger.claims(exp=now - 40, iat=now - 600, nbf=now - 600))
    assert_refused(get_me(token), EXPIRED_BODY, EXPIRED_CHALLENGE)


def test_nbf_in_the_future_beyond_leeway_is_rejected(
    forger: Forger, get_me: Callable[[str], Any]
) -> None:
    now = int(time.time())
    token = forger.token(payload=forger.claims(nbf=now + 120, exp=now + 900))
    assert_refused(get_me(token))


def test_iat_in_the_future_beyond_leeway_is_rejected(
    forger: Forger, get_me: Callable[[str], Any]
) -> None:
    now = int(time.time())
    token = forger.token(payload=forger.claims(iat=now + 120, nbf=now, exp=now + 900))
    assert_refused(get_me(token))


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
    assert_refused(get_me(forger.with_claim_text("exp", json_text)))


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
def test_numeric_date_as_huge_integer_is_rejected_not_a_server_error(
    name: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    # 10**400 is a valid JSON number but cannot be converted to a float.
    assert_refused(get_me(forger.with_claim_text(name, "1" + "0" * 400)))


# --- issuer, audience, required claims -------------------------------------------------------


def test_wrong_issuer_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    assert_refused(get_me(forger.token(payload=forger.claims(iss="https://evil.example"))))


def test_wrong_audience_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    assert_refused(get_me(forger.token(payload=forger.claims(aud="some-other-api"))))


def test_audience_list_without_our_audience_is_rejected(
    forger: Forger, get_me: Callable[[str], Any]
) -> None:
    token = forger.token(payload=forger.claims(aud=["some-other-api", "another"]))
    assert_refused(get_me(token))


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "iat", "jti"])
def test_missing_required_claim_is_rejected(
    claim: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    assert_refused(get_me(forger.token(payload=forger.claims(drop=(claim,)))))


def test_sub_that_is_not_a_uuid_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    assert_refused(get_me(forger.token(payload=forger.claims(sub="alice"))))


def test_sub_of_unknown_user_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    token = forger.token(payload=forger.claims(sub=str(uuid.uuid4())))
    assert_refused(get_me(token), USER_GONE_BODY, USER_GONE_CHALLENGE)


def test_duplicate_claim_names_in_payload_are_rejected(
    forger: Forger, admin: dict[str, Any], get_me: Callable[[str], Any]
) -> None:
    # Parsers that keep the first member see alice; parsers that keep the last see the admin.
    payload = json.dumps(forger.claims())[:-1] + f', "sub": "{admin["id"]}"' + "}"
    assert_refused(get_me(forger.token(payload=payload)))


# --- header members --------------------------------------------------------------------------


def test_unknown_kid_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    assert_refused(get_me(forger.token(header=forger.header(kid="no-such-key"))))


def test_kid_path_traversal_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    assert_refused(get_me(forger.token(header=forger.header(kid="../../dev/null"))))


def test_kid_sql_injection_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    token = forger.token(header=forger.header(kid="x' UNION SELECT 'secret' --"))
    assert_refused(get_me(token))


def test_kid_that_is_not_a_string_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    assert_refused(get_me(forger.token(header=forger.header(kid=[forger.kid]))))


def test_missing_kid_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    header = forger.header()
    del header["kid"]
    assert_refused(get_me(forger.token(header=header)))


def test_typ_jwt_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    assert_refused(get_me(forger.token(header=forger.header(typ="JWT"))))


def test_missing_typ_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    header = forger.header()
    del header["typ"]
    assert_refused(get_me(forger.token(header=header)))


def test_crit_header_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    token = forger.token(header=forger.header(crit=["exp"]))
    assert_refused(get_me(token))


@pytest.mark.parametrize(
    ("member", "value"),
    [
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
    assert_refused(get_me(forger.token(header=forger.header(**{member: value}))))


def test_embedded_attacker_jwk_is_rejected(
    forger: Forger, attacker_key: rsa.RSAPrivateKey, get_me: Callable[[str], Any]
) -> None:
    jwk = public_jwk(attacker_key.public_key())
    header = forger.header(kid=thumbprint(jwk), jwk=jwk)
    assert_refused(get_me(forger.token(header=header, private_key=attacker_key)))


def test_embedded_attacker_jwk_under_our_kid_is_rejected(
    forger: Forger, attacker_key: rsa.RSAPrivateKey, get_me: Callable[[str], Any]
) -> None:
    header = forger.header(jwk=public_jwk(attacker_key.public_key()))
    assert_refused(get_me(forger.token(header=header, private_key=attacker_key)))


def test_duplicate_header_member_names_are_rejected(
    forger: Forger, get_me: Callable[[str], Any]
) -> None:
    header = json.dumps(forger.header())[:-1] + ', "alg": "none"}'
    assert_refused(get_me(forger.token(header=header)))


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
    assert_refused(get_me(forger.token(header=header_text)))


def test_invalid_utf8_in_header_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    header = json.dumps(forger.header()).encode("ascii")[:-1] + b', "x": "\xff\xfe"}'
    assert_refused(get_me(forger.token(header=header)))


def test_invalid_utf8_in_header_value_of_kid_is_rejected(
    forger: Forger, get_me: Callable[[str], Any]
) -> None:
    header = b'{"alg": "RS256", "kid": "' + forger.kid.encode() + b'\xc3", "typ": "at+jwt"}'
    assert_refused(get_me(forger.token(header=header)))


# --- shape -----------------------------------------------------------------------------------


def test_jwe_shaped_five_segment_token_is_rejected(get_me: Callable[[str], Any]) -> None:
    header = encode_segment({"alg": "RSA-OAEP", "enc": "A256GCM", "typ": "at+jwt"})
    token = ".".join([header, b64url(b"k" * 256), b64url(b"i" * 12), b64url(b"c" * 64), "tag"])
    assert_refused(get_me(token))


def test_two_segment_token_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    assert_refused(get_me(forger.token().rsplit(".", 1)[0]))


def test_four_segment_token_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    assert_refused(get_me(forger.token() + "." + b64url(b"extra")))


def test_token_over_8_kib_is_rejected_even_when_correctly_signed(
    forger: Forger, get_me: Callable[[str], Any]
) -> None:
    token = forger.token(payload=forger.claims(padding="p" * 6500))
    assert len(token) > 8192
    assert_refused(get_me(token))


def test_one_megabyte_token_is_rejected(get_me: Callable[[str], Any]) -> None:
    token = "a" * (1024 * 1024 - 4) + ".b.c"
    assert_refused(get_me(token))


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
    assert_refused(get_me(f"{header}.{payload}.{mangle(signature)}"))


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
    assert_refused(get_me(token))


# --- the user behind a valid token ----------------------------------------------------------


def test_valid_token_of_disabled_user_is_rejected(
    client: TestClient,
    user: dict[str, Any],
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    assert client.get("/users/me", headers=user_headers).status_code == 200
    response = client.patch(
        f"/admin/users/{user['id']}", json={"is_active": False}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    assert_refused(
        client.get("/users/me", headers=user_headers), USER_GONE_BODY, USER_GONE_CHALLENGE
    )


def test_valid_token_of_deleted_user_is_rejected(
    client: TestClient,
    user: dict[str, Any],
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    assert client.get("/users/me", headers=user_headers).status_code == 200
    response = client.delete(f"/admin/users/{user['id']}", headers=admin_headers)
    assert response.status_code == 204, response.text
    assert_refused(
        client.get("/users/me", headers=user_headers), USER_GONE_BODY, USER_GONE_CHALLENGE
    )
