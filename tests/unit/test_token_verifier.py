"""AccessTokenSigner, AccessTokenVerifier and build_access_token_claims, without HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authsvc.security.keys import SigningKey, hmac_key
from authsvc.security.tokens import (
    ACCESS_TOKEN_TYPE,
    MAX_TOKEN_BYTES,
    AccessTokenSigner,
    AccessTokenVerifier,
    TokenValidationError,
    VerificationKey,
    build_access_token_claims,
    verification_key_from_jwk,
    verification_key_from_signing_key,
)
from tests.helpers import Forger, b64url_decode

ISSUER = "https://issuer.example"
AUDIENCE = "api"
SUBJECT = "0b6f3f0e-8f3c-4d0e-9d55-3f7e3a0d3b7c"


def claims(now: int | None = None, ttl: int = 600, **extra: Any) -> dict[str, Any]:
    return build_access_token_claims(
        issuer=ISSUER,
        audience=AUDIENCE,
        subject=SUBJECT,
        client_id="public",
        scopes=["read", "write"],
        ttl=ttl,
        extra=extra,
        now=now,
    )


def make_verifier(*keys: SigningKey, algorithm: str, **options: Any) -> AccessTokenVerifier:
    """A verifier for ISSUER and AUDIENCE that trusts the public half of each key given."""
    return AccessTokenVerifier(
        {key.kid: verification_key_from_signing_key(key) for key in keys},
        algorithms=[algorithm],
        issuer=ISSUER,
        audience=AUDIENCE,
        **options,
    )


def es256_key(kid: str) -> SigningKey:
    return SigningKey(
        kid=kid,
        algorithm="ES256",
        created=datetime.now(UTC),
        private_key=ec.generate_private_key(ec.SECP256R1()),
    )


@pytest.fixture
def signer(signing_key: SigningKey) -> AccessTokenSigner:
    return AccessTokenSigner(signing_key)


@pytest.fixture
def verifier(signing_key: SigningKey) -> AccessTokenVerifier:
    return make_verifier(signing_key, algorithm="RS256", leeway=30)


@pytest.fixture
def forger(signing_key: SigningKey) -> Forger:
    """Overrides the conftest ``forger``: tokens with this module's claims, no user needed."""
    return Forger(signing_key, claims)


def rejection(verifier: AccessTokenVerifier, token: str, **kwargs: Any) -> TokenValidationError:
    with pytest.raises(TokenValidationError) as info:
        verifier.verify(token, **kwargs)
    return info.value


# --- build_access_token_claims -------------------------------------------------------------


def test_build_claims_sets_rfc_9068_claims_from_now_and_ttl() -> None:
    built = claims(now=1_700_000_000, ttl=900, preferred_username="alice")
    jti = built.pop("jti")
    assert built == {
        "iss": ISSUER,
        "sub": SUBJECT,
        "aud": AUDIENCE,
        "exp": 1_700_000_900,
        "iat": 1_700_000_000,
        "nbf": 1_700_000_000,
        "client_id": "public",
        "scope": "read write",
        "preferred_username": "alice",
    }
    assert isinstance(jti, str)
    assert len(jti) == 32


def test_build_claims_gives_each_token_a_unique_jti() -> None:
    assert len({claims()["jti"] for _ in range(50)}) == 50


def test_build_claims_defaults_now_to_current_time() -> None:
    before = int(time.time())
    built = claims()
    assert before <= built["iat"] <= int(time.time())


def test_build_claims_with_no_scopes_has_empty_scope() -> None:
    built = build_access_token_claims(
        issuer=ISSUER, audience=AUDIENCE, subject=SUBJECT, client_id="c", scopes=[], ttl=60
    )
    assert built["scope"] == ""


# --- signer and round trip ----------------------------------------------------------------


def test_signer_header_is_alg_kid_and_at_jwt_typ(
    signer: AccessTokenSigner, signing_key: SigningKey
) -> None:
    token = signer.sign(claims())
    header = json.loads(b64url_decode(token.split(".")[0]))
    assert header == {"alg": "RS256", "kid": signing_key.kid, "typ": ACCESS_TOKEN_TYPE}


def test_signed_token_round_trips_through_verifier(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier
) -> None:
    original = claims(preferred_username="alice")
    assert verifier.verify(signer.sign(original)) == original


def test_parse_unverified_returns_header_and_claims(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier, signing_key: SigningKey
) -> None:
    original = claims()
    header, parsed = verifier.parse_unverified(signer.sign(original))
    assert header["kid"] == signing_key.kid
    assert parsed == original


@pytest.mark.parametrize(
    ("algorithm", "make_key"),
    [
        pytest.param("ES256", lambda: es256_key("ec-1"), id="es256"),
        pytest.param("HS256", lambda: hmac_key(b"s" * 32), id="hs256"),
    ],
)
def test_es256_and_hs256_tokens_round_trip(
    algorithm: str, make_key: Callable[[], SigningKey]
) -> None:
    key = make_key()
    verifier = make_verifier(key, algorithm=algorithm)
    original = claims()
    assert verifier.verify(AccessTokenSigner(key).sign(original)) == original


def test_verification_key_from_published_jwk_verifies(
    signer: AccessTokenSigner, signing_key: SigningKey
) -> None:
    jwk = signing_key.public_jwk()
    assert jwk is not None
    key = verification_key_from_jwk(jwk, "RS256")
    verifier = AccessTokenVerifier(
        {key.kid: key}, algorithms=["RS256"], issuer=ISSUER, audience=AUDIENCE
    )
    original = claims()
    assert verifier.verify(signer.sign(original)) == original


def test_verification_key_from_jwk_without_kid_is_refused(signing_key: SigningKey) -> None:
    jwk = signing_key.public_jwk()
    assert jwk is not None
    del jwk["kid"]
    with pytest.raises(ValueError, match="kid"):
        verification_key_from_jwk(jwk, "RS256")


def test_audience_list_containing_our_audience_is_accepted(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier
) -> None:
    token = signer.sign(claims() | {"aud": ["other", AUDIENCE]})
    assert verifier.verify(token)["aud"] == ["other", AUDIENCE]


def test_application_at_jwt_typ_is_accepted(forger: Forger, verifier: AccessTokenVerifier) -> None:
    header = forger.header(typ="application/at+jwt")
    assert verifier.verify(forger.token(header=header))["sub"] == SUBJECT


def test_missing_nbf_is_accepted(forger: Forger, verifier: AccessTokenVerifier) -> None:
    payload = forger.claims(drop=("nbf",))
    assert verifier.verify(forger.token(payload=payload))["sub"] == SUBJECT


# --- flags on TokenValidationError --------------------------------------------------------


def test_expired_token_sets_expired_flag(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier
) -> None:
    error = rejection(verifier, signer.sign(claims(now=int(time.time()) - 3600, ttl=60)))
    assert error.expired is True
    assert error.unknown_kid is None


def test_token_expired_within_leeway_is_accepted(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier
) -> None:
    token = signer.sign(claims(now=int(time.time()) - 70, ttl=60))
    assert verifier.verify(token)["sub"] == SUBJECT


def test_zero_leeway_rejects_token_expired_a_second_ago(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier
) -> None:
    strict = AccessTokenVerifier(
        verifier.keys, algorithms=["RS256"], issuer=ISSUER, audience=AUDIENCE, leeway=0
    )
    token = signer.sign(claims(now=int(time.time()) - 62, ttl=60))
    assert rejection(strict, token).expired is True


def test_unknown_kid_sets_unknown_kid(forger: Forger, verifier: AccessTokenVerifier) -> None:
    token = forger.token(header=forger.header(kid="rotated-away"))
    error = rejection(verifier, token)
    assert error.unknown_kid == "rotated-away"
    assert error.expired is False


def test_bad_signature_sets_neither_flag(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier
) -> None:
    token = signer.sign(claims())
    signing_input, signature = token.rsplit(".", 1)
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    error = rejection(verifier, f"{signing_input}.{flipped}")
    assert error.expired is False
    assert error.unknown_kid is None


# --- each rejection reason ------------------------------------------------------------------


def test_token_over_size_limit_is_refused(forger: Forger, verifier: AccessTokenVerifier) -> None:
    token = forger.token(payload=forger.claims(filler="f" * MAX_TOKEN_BYTES))
    assert "too large" in rejection(verifier, token).reason


@pytest.mark.parametrize("count", [1, 2, 4, 5])
def test_wrong_segment_count_is_refused(
    count: int, forger: Forger, verifier: AccessTokenVerifier
) -> None:
    segments = [*forger.token().split("."), "ZXh0cmE", "ZXh0cmE"][:count]
    assert "three segments" in rejection(verifier, ".".join(segments)).reason


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("", id="empty"),
        pytest.param("abc+def", id="plus"),
        pytest.param("abc/def", id="slash"),
        pytest.param("abcdef==", id="padding"),
        pytest.param("abc def", id="space"),
        pytest.param("abc\ndef", id="newline"),
        pytest.param("abcdéf", id="non-ascii"),
    ],
)
def test_segment_with_non_base64url_characters_is_refused(
    signature: str, forger: Forger, verifier: AccessTokenVerifier
) -> None:
    signing_input = forger.token().rsplit(".", 1)[0]
    reason = rejection(verifier, f"{signing_input}.{signature}").reason
    assert "base64url" in reason


def test_segment_with_trailing_newline_is_refused(
    forger: Forger, verifier: AccessTokenVerifier
) -> None:
    # ``$`` in a regex also matches before a final newline; a newline must still be refused.
    rejection(verifier, forger.token() + "\n")


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"\xff\xfe{}", id="invalid-utf8"),
        pytest.param("{not json", id="not-json"),
        pytest.param('{"alg": NaN}', id="nan"),
        pytest.param("[" * 2500 + "]" * 2500, id="deep-nesting"),
    ],
)
def test_malformed_header_is_refused(
    header: Any, forger: Forger, verifier: AccessTokenVerifier
) -> None:
    assert "header" in rejection(verifier, forger.token(header=header)).reason


@pytest.mark.parametrize("header", ['["RS256"]', '"RS256"', "1", "null"])
def test_header_that_is_not_an_object_is_refused(
    header: str, forger: Forger, verifier: AccessTokenVerifier
) -> None:
    reason = rejection(verifier, forger.token(header=header)).reason
    assert reason == "header is not a JSON object"


def test_duplicate_header_member_is_refused(forger: Forger, verifier: AccessTokenVerifier) -> None:
    header = json.dumps(forger.header())[:-1] + ', "alg": "RS256"}'
    assert "duplicate member 'alg'" in rejection(verifier, forger.token(header=header)).reason


@pytest.mark.parametrize("member", ["crit", "jku", "x5u", "jwk", "x5c", "cty", "enc", "zip"])
def test_header_member_outside_alg_kid_typ_is_refused(
    member: str, forger: Forger, verifier: AccessTokenVerifier
) -> None:
    header = forger.header() | {member: "x"}
    reason = rejection(verifier, forger.token(header=header)).reason
    assert reason == f"unexpected header members: ['{member}']"


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "RS384", "PS256", "ES256", None])
def test_alg_other_than_configured_is_refused(
    alg: str | None, forger: Forger, verifier: AccessTokenVerifier
) -> None:
    header = forger.header(alg=alg)
    assert rejection(verifier, forger.token(header=header)).reason == "unexpected alg"


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt ", "application/jwt", "", 1, None])
def test_typ_other_than_at_jwt_is_refused(
    typ: Any, forger: Forger, verifier: AccessTokenVerifier
) -> None:
    header = forger.header(typ=typ)
    assert "typ must be at+jwt" in rejection(verifier, forger.token(header=header)).reason


def test_missing_typ_is_refused(forger: Forger, verifier: AccessTokenVerifier) -> None:
    header = forger.header(drop=("typ",))
    assert "typ must be at+jwt" in rejection(verifier, forger.token(header=header)).reason


@pytest.mark.parametrize("kid", [None, 1, ["k"]])
def test_kid_that_is_not_a_string_is_refused(
    kid: Any, forger: Forger, verifier: AccessTokenVerifier
) -> None:
    header = forger.header(kid=kid)
    assert rejection(verifier, forger.token(header=header)).reason == "missing kid"


def test_missing_kid_is_refused(forger: Forger, verifier: AccessTokenVerifier) -> None:
    header = forger.header(drop=("kid",))
    assert rejection(verifier, forger.token(header=header)).reason == "missing kid"


def test_duplicate_claim_is_refused(forger: Forger, verifier: AccessTokenVerifier) -> None:
    payload = json.dumps(forger.claims())[:-1] + ', "sub": "someone-else"}'
    assert "duplicate member 'sub'" in rejection(verifier, forger.token(payload=payload)).reason


@pytest.mark.parametrize("payload", ['["claims"]', '"claims"', "42"])
def test_payload_that_is_not_an_object_is_refused(
    payload: str, forger: Forger, verifier: AccessTokenVerifier
) -> None:
    assert (
        rejection(verifier, forger.token(payload=payload)).reason == "payload is not a JSON object"
    )


def test_payload_with_invalid_utf8_is_refused(
    forger: Forger, verifier: AccessTokenVerifier
) -> None:
    payload = json.dumps(forger.claims()).encode("utf-8")[:-1] + b', "x": "\xc3"}'
    assert "malformed payload" in rejection(verifier, forger.token(payload=payload)).reason


@pytest.mark.parametrize("name", ["iss", "sub", "aud", "exp", "iat", "jti"])
def test_missing_required_claim_is_refused(
    name: str, forger: Forger, verifier: AccessTokenVerifier
) -> None:
    payload = forger.claims(drop=(name,))
    assert rejection(verifier, forger.token(payload=payload)).reason == f"missing claim {name}"


@pytest.mark.parametrize("name", ["iss", "sub", "jti"])
@pytest.mark.parametrize("value", ["", None, 1, ["x"]])
def test_string_claim_that_is_empty_or_not_a_string_is_refused(
    name: str, value: Any, forger: Forger, verifier: AccessTokenVerifier
) -> None:
    token = forger.token(payload=forger.claims() | {name: value})
    assert rejection(verifier, token).reason == f"claim {name} must be a non-empty string"


@pytest.mark.parametrize("aud", [None, 1, [AUDIENCE, 1], {"aud": AUDIENCE}])
def test_aud_that_is_not_a_string_or_list_of_strings_is_refused(
    aud: Any, forger: Forger, verifier: AccessTokenVerifier
) -> None:
    reason = rejection(verifier, forger.token(payload=forger.claims() | {"aud": aud})).reason
    assert reason == "claim aud must be a string or a list of strings"


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", ["1700000000", None, True, [1], {"t": 1}])
def test_numeric_date_of_wrong_type_is_refused(
    name: str, value: Any, forger: Forger, verifier: AccessTokenVerifier
) -> None:
    reason = rejection(verifier, forger.token(payload=forger.claims() | {name: value})).reason
    assert reason == f"claim {name} is not a NumericDate"


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [-1, 2**53, 1e308, -0.5])
def test_numeric_date_out_of_range_is_refused(
    name: str, value: float, forger: Forger, verifier: AccessTokenVerifier
) -> None:
    reason = rejection(verifier, forger.token(payload=forger.claims() | {name: value})).reason
    assert reason == f"claim {name} is out of range"


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
def test_numeric_date_as_integer_too_large_for_a_float_is_refused(
    name: str, forger: Forger, verifier: AccessTokenVerifier
) -> None:
    token = forger.with_claim_text(name, "1" + "0" * 400)
    assert rejection(verifier, token).reason == f"claim {name} is out of range"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_json_number_literal_is_refused(
    literal: str, forger: Forger, verifier: AccessTokenVerifier
) -> None:
    token = forger.with_claim_text("exp", literal)
    assert "non-JSON number" in rejection(verifier, token).reason


@pytest.mark.parametrize("name", ["scope", "client_id"])
def test_scope_or_client_id_that_is_not_a_string_is_refused(
    name: str, forger: Forger, verifier: AccessTokenVerifier
) -> None:
    token = forger.token(payload=forger.claims() | {name: ["admin"]})
    assert rejection(verifier, token).reason == f"claim {name} must be a string"


def test_key_of_other_algorithm_under_known_kid_is_refused(signing_key: SigningKey) -> None:
    # The ES256 verifier knows the kid, but only as the RSA key it is.
    verifier = make_verifier(signing_key, algorithm="ES256")
    token = AccessTokenSigner(es256_key(signing_key.kid)).sign(claims())
    assert rejection(verifier, token).reason == "key algorithm mismatch"


def test_signature_by_another_key_is_refused(
    signing_key: SigningKey, verifier: AccessTokenVerifier
) -> None:
    other = SigningKey(
        kid=signing_key.kid,
        algorithm="RS256",
        created=datetime.now(UTC),
        private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )
    reason = rejection(verifier, AccessTokenSigner(other).sign(claims())).reason
    assert "Signature verification failed" in reason


def test_wrong_issuer_is_refused(signer: AccessTokenSigner, verifier: AccessTokenVerifier) -> None:
    token = signer.sign(claims() | {"iss": "https://evil.example"})
    assert "issuer" in rejection(verifier, token).reason.lower()


def test_wrong_audience_is_refused(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier
) -> None:
    token = signer.sign(claims() | {"aud": "other-api"})
    assert "audience" in rejection(verifier, token).reason.lower()


def test_empty_audience_list_is_refused(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier
) -> None:
    token = signer.sign(claims() | {"aud": []})
    assert "audience" in rejection(verifier, token).reason.lower()


def test_nbf_beyond_leeway_is_refused(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier
) -> None:
    now = int(time.time())
    token = signer.sign(claims(now=now) | {"nbf": now + 120})
    error = rejection(verifier, token)
    assert "nbf" in error.reason
    assert error.expired is False


def test_nbf_within_leeway_is_accepted(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier
) -> None:
    now = int(time.time())
    assert verifier.verify(signer.sign(claims(now=now) | {"nbf": now + 10}))["sub"] == SUBJECT


def test_iat_beyond_leeway_is_refused(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier
) -> None:
    now = int(time.time())
    token = signer.sign(claims(now=now) | {"iat": now + 120})
    assert rejection(verifier, token).reason == "token issued in the future"


def test_iat_check_uses_the_given_now(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier
) -> None:
    now = int(time.time())
    token = signer.sign(claims(now=now))
    assert verifier.verify(token, now=now - 29)["sub"] == SUBJECT
    assert rejection(verifier, token, now=now - 31).reason == "token issued in the future"


def test_verifier_without_keys_refuses_everything(signer: AccessTokenSigner) -> None:
    verifier = AccessTokenVerifier({}, algorithms=["RS256"], issuer=ISSUER, audience=AUDIENCE)
    assert rejection(verifier, signer.sign(claims())).unknown_kid == signer.kid


def test_verification_key_is_keyed_by_kid_only(signing_key: SigningKey) -> None:
    key = verification_key_from_signing_key(signing_key)
    assert isinstance(key, VerificationKey)
    assert (key.kid, key.algorithm) == (signing_key.kid, "RS256")
