"""AccessTokenVerifier remembers the tokens it verified: a hit skips the signature check and
rechecks only the time claims; new keys forget everything; refusals are never remembered.

Signature checks are counted by a spy on ``jose.jwt.decode`` (the only call that checks one).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from jose import jwt as jose_jwt

from authsvc.security.keys import SigningKey
from authsvc.security.tokens import (
    AccessTokenSigner,
    AccessTokenVerifier,
    TokenValidationError,
    build_access_token_claims,
    verification_key_from_signing_key,
)

ISSUER = "https://issuer.example"
AUDIENCE = "api"
SUBJECT = "0b6f3f0e-8f3c-4d0e-9d55-3f7e3a0d3b7c"
LEEWAY = 30
# The one call that checks a signature, as the verifier looks it up.
DECODE = "authsvc.security.tokens.jwt.decode"


def claims(now: int | None = None, ttl: int = 600) -> dict[str, Any]:
    return build_access_token_claims(
        issuer=ISSUER,
        audience=AUDIENCE,
        subject=SUBJECT,
        client_id="public",
        scopes=["read", "write"],
        ttl=ttl,
        now=now,
    )


def make_verifier(key: SigningKey, **options: Any) -> AccessTokenVerifier:
    options.setdefault("leeway", LEEWAY)
    return AccessTokenVerifier(
        {key.kid: verification_key_from_signing_key(key)},
        algorithms=["RS256"],
        issuer=ISSUER,
        audience=AUDIENCE,
        **options,
    )


def rejection(verifier: AccessTokenVerifier, token: str, **kwargs: Any) -> TokenValidationError:
    with pytest.raises(TokenValidationError) as info:
        verifier.verify(token, **kwargs)
    return info.value


@pytest.fixture
def signer(signing_key: SigningKey) -> AccessTokenSigner:
    return AccessTokenSigner(signing_key)


@pytest.fixture
def verifier(signing_key: SigningKey) -> AccessTokenVerifier:
    return make_verifier(signing_key)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens whose signature was checked, in order."""
    checked: list[str] = []
    decode = jose_jwt.decode

    def spy(token: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        checked.append(token)
        result: dict[str, Any] = decode(token, *args, **kwargs)
        return result

    monkeypatch.setattr(DECODE, spy)
    return checked


# --- hits --------------------------------------------------------------------------------------


def test_a_verified_token_is_not_verified_again(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier, decodes: list[str]
) -> None:
    token = signer.sign(claims())

    first = verifier.verify(token)
    second = verifier.verify(token)

    assert decodes == [token]
    assert second == first
    assert second["sub"] == SUBJECT


def test_each_distinct_token_is_verified_once(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier, decodes: list[str]
) -> None:
    one, other = signer.sign(claims()), signer.sign(claims())

    for token in (one, other, one, other):
        verifier.verify(token)

    assert decodes == [one, other]


def test_a_cached_token_past_exp_but_within_leeway_is_still_a_hit(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier, decodes: list[str]
) -> None:
    issued = claims()
    token = signer.sign(issued)
    verifier.verify(token)

    assert verifier.verify(token, now=issued["exp"] + LEEWAY)["jti"] == issued["jti"]
    assert decodes == [token]


def test_a_cached_token_is_refused_as_expired_once_past_exp_and_leeway(
    signing_key: SigningKey, signer: AccessTokenSigner
) -> None:
    # jose reads the real clock in whole seconds, so the token must really expire: exp is
    # now and the leeway one second, so it is good now and refused two seconds from now.
    verifier = make_verifier(signing_key, leeway=1)
    now = int(time.time())
    token = signer.sign(claims(now=now - 60, ttl=60))
    assert verifier.verify(token)["exp"] == now
    while time.time() < now + 2:
        time.sleep(0.05)

    error = rejection(verifier, token)

    assert error.expired is True
    assert error.reason == "token expired"


def test_a_cached_token_is_refused_before_its_iat_less_leeway(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier
) -> None:
    issued = claims()
    token = signer.sign(issued)
    verifier.verify(token)

    error = rejection(verifier, token, now=issued["iat"] - LEEWAY - 1)

    assert error.reason == "token issued in the future"
    assert error.expired is False


# --- keys ----------------------------------------------------------------------------------------


def test_replacing_keys_makes_a_cached_token_fail_with_unknown_kid(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier, signing_key: SigningKey
) -> None:
    token = signer.sign(claims())
    verifier.verify(token)

    verifier.keys = {}

    error = rejection(verifier, token)
    assert error.unknown_kid == signing_key.kid
    assert error.expired is False


def test_reinstalling_the_same_keys_verifies_a_cached_token_afresh(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier, decodes: list[str]
) -> None:
    token = signer.sign(claims())
    verifier.verify(token)

    verifier.keys = dict(verifier.keys)
    verifier.verify(token)

    assert decodes == [token, token]


def test_a_token_verified_while_its_key_is_withdrawn_is_not_remembered(
    signer: AccessTokenSigner,
    verifier: AccessTokenVerifier,
    signing_key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decode = jose_jwt.decode

    def decode_while_keys_change(token: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = decode(token, *args, **kwargs)
        # Another thread (a JWKS refresh, a keys directory rescan) installs keys without
        # this kid while this one is checking the signature.
        verifier.keys = {}
        return result

    token = signer.sign(claims())
    with monkeypatch.context() as patch:
        patch.setattr(DECODE, decode_while_keys_change)
        verifier.verify(token)  # raced with the replacement: either answer is fair

    assert rejection(verifier, token).unknown_kid == signing_key.kid


# --- refusals and the bound ----------------------------------------------------------------------


def test_a_refused_token_is_not_cached(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier, decodes: list[str]
) -> None:
    token = signer.sign(claims() | {"aud": "another-api"})

    assert rejection(verifier, token).reason == rejection(verifier, token).reason
    assert decodes == [token, token]


def test_a_token_refused_for_an_unknown_kid_verifies_once_its_key_is_installed(
    signer: AccessTokenSigner, signing_key: SigningKey
) -> None:
    verifier = AccessTokenVerifier({}, algorithms=["RS256"], issuer=ISSUER, audience=AUDIENCE)
    token = signer.sign(claims())
    assert rejection(verifier, token).unknown_kid == signing_key.kid

    verifier.keys = {signing_key.kid: verification_key_from_signing_key(signing_key)}

    assert verifier.verify(token)["sub"] == SUBJECT


def test_cache_size_bounds_the_entries_dropping_the_oldest(
    signing_key: SigningKey, signer: AccessTokenSigner, decodes: list[str]
) -> None:
    verifier = make_verifier(signing_key, cache_size=2)
    first, second, third = (signer.sign(claims()) for _ in range(3))
    for token in (first, second, third):
        verifier.verify(token)
    decodes.clear()

    verifier.verify(second)
    verifier.verify(third)
    assert decodes == []

    verifier.verify(first)
    assert decodes == [first]


def test_cache_size_zero_verifies_every_time(
    signing_key: SigningKey, signer: AccessTokenSigner, decodes: list[str]
) -> None:
    verifier = make_verifier(signing_key, cache_size=0)
    token = signer.sign(claims())

    verifier.verify(token)
    verifier.verify(token)

    assert decodes == [token, token]


# --- what callers are given ----------------------------------------------------------------------


def test_mutating_returned_claims_does_not_change_the_next_answer(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier
) -> None:
    issued = claims()
    token = signer.sign(issued)

    first = verifier.verify(token)  # a miss
    first["sub"] = "mallory"
    first["scope"] = "admin"
    del first["jti"]
    second = verifier.verify(token)  # a hit
    second["exp"] = 0
    third = verifier.verify(token)

    for answer in (second, third):
        assert answer["sub"] == SUBJECT
        assert answer["scope"] == "read write"
        assert answer["jti"] == issued["jti"]
    assert third["exp"] == issued["exp"]


def test_mutating_a_list_valued_claim_does_not_change_the_next_answer(
    signer: AccessTokenSigner, verifier: AccessTokenVerifier
) -> None:
    token = signer.sign(claims() | {"aud": [AUDIENCE, "billing"]})

    verifier.verify(token)["aud"].append("admin-api")

    assert verifier.verify(token)["aud"] == [AUDIENCE, "billing"]
