"""TokenValidator against the real gateway: discovery, its tokens, and the same verdicts.

The gateway runs under uvicorn on a loopback port (``live_gateway``); the validator finds its
keys through RFC 8414 metadata exactly as a downstream service would. Each forged token is put
to both the gateway's own protected route and the guard: they share one verifier, so the two
must refuse (or accept) every token alike, with the same RFC 6750 error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from authsvc.config import Settings
from authsvc.guard import TokenValidator
from authsvc.guard.http import metadata_url
from authsvc.oauth2.client_auth import DEFAULT_CLIENT_ID
from authsvc.oauth2.errors import InvalidTokenError, TemporarilyUnavailableError
from authsvc.security.keys import SigningKey, public_jwk, thumbprint
from authsvc.security.principal import Principal
from tests.guard.conftest import DocumentServer
from tests.helpers import (
    AUDIENCE,
    EXPIRED_TOKEN,
    INVALID_TOKEN,
    Forger,
    access_token_for,
    b64url,
    b64url_decode,
    bearer,
    encode_segment,
    password_login,
)

pytestmark = pytest.mark.anyio

JWKS_PATH = "/.well-known/jwks.json"


@pytest.fixture(scope="module")
def attacker_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Recorder:
    """An httpx client that notes every URL the validator asks for."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.urls: list[str] = []
        self.http = httpx.AsyncClient(
            timeout=5, transport=transport, event_hooks={"request": [self._record]}
        )

    async def _record(self, request: httpx.Request) -> None:
        self.urls.append(str(request.url))


def gateway_validator(
    issuer: str, http: httpx.AsyncClient | None = None, **options: Any
) -> TokenValidator:
    return TokenValidator(issuer, AUDIENCE, http_client=http, **options)


async def guard_refusal(validator: TokenValidator, token: str) -> InvalidTokenError:
    with pytest.raises(InvalidTokenError) as info:
        await validator.validate(token)
    assert info.value.status_code == 401
    assert info.value.error == "invalid_token"
    return info.value


def gateway_me(client: TestClient, token: str) -> Any:
    return client.get("/users/me", headers=bearer(token))


async def assert_same_refusal(client: TestClient, validator: TokenValidator, token: str) -> None:
    """The gateway's route and the guard refuse ``token`` with the same status, body and
    challenge."""
    response = gateway_me(client, token)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_token"
    error = await guard_refusal(validator, token)
    assert error.body() == response.json()
    assert error.headers()["WWW-Authenticate"] == response.headers["www-authenticate"]


# --- a real token ----------------------------------------------------------------------------


async def test_gateway_token_validates_after_one_discovery_and_one_jwks_fetch(
    live_gateway: str, client: TestClient, user: dict[str, Any]
) -> None:
    token = access_token_for(client, user)
    recorder = Recorder()
    async with recorder.http, gateway_validator(live_gateway, recorder.http) as validator:
        principal = await validator.validate(token)
        assert recorder.urls == [metadata_url(live_gateway), live_gateway + JWKS_PATH]
        again = await validator.validate(token)
        assert recorder.urls == [metadata_url(live_gateway), live_gateway + JWKS_PATH]
        assert validator.jwks.fetches == 1
    assert isinstance(principal, Principal)
    assert principal.sub == user["id"]
    assert principal.username == "alice"
    assert principal.client_id == DEFAULT_CLIENT_ID
    assert principal.scopes == frozenset()
    assert principal.claims["iss"] == live_gateway
    assert principal.claims["aud"] == AUDIENCE
    assert principal.jti == principal.claims["jti"]
    assert {"jti", "iss", "aud", "exp", "iat"} <= set(principal.claims)
    assert again == principal


async def test_principal_carries_the_tokens_client_and_scopes(
    live_gateway: str, client: TestClient, admin: dict[str, Any]
) -> None:
    body = password_login(
        client, admin["username"], admin["password"], client_id="orders-ui", scope="admin"
    )
    async with gateway_validator(live_gateway) as validator:
        principal = await validator.validate(body["access_token"])
    assert principal.sub == admin["id"]
    assert principal.username == "root-admin"
    assert principal.client_id == "orders-ui"
    assert principal.scopes == frozenset({"admin"})


async def test_gateway_token_validates_with_explicit_jwks_url(
    live_gateway: str, client: TestClient, user: dict[str, Any]
) -> None:
    recorder = Recorder()
    jwks_url = live_gateway + JWKS_PATH
    async with (
        recorder.http,
        gateway_validator(live_gateway, recorder.http, jwks_url=jwks_url) as validator,
    ):
        assert (await validator.validate(access_token_for(client, user))).sub == user["id"]
    assert recorder.urls == [jwks_url]


async def test_forged_control_token_is_accepted_by_gateway_and_guard(
    live_gateway: str, client: TestClient, forger: Forger, user: dict[str, Any]
) -> None:
    token = forger.token()
    response = gateway_me(client, token)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == user["id"]
    async with gateway_validator(live_gateway) as validator:
        assert (await validator.validate(token)).sub == user["id"]


# --- same verdict as the gateway -------------------------------------------------------------


@dataclass(frozen=True)
class Kit:
    forger: Forger
    signing_key: SigningKey
    attacker_key: rsa.RSAPrivateKey


def _unsigned(kit: Kit, alg: str) -> str:
    f = kit.forger
    return encode_segment(f.header(alg=alg)) + "." + encode_segment(f.claims()) + "."


def _hs256_with_public_key(kit: Kit) -> str:
    public_key = kit.signing_key.public_key
    assert public_key is not None
    secret = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    f = kit.forger
    signing_input = encode_segment(f.header(alg="HS256")) + "." + encode_segment(f.claims())
    signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def _ps256_with_our_key(kit: Kit) -> str:
    f = kit.forger
    signing_input = encode_segment(f.header(alg="PS256")) + "." + encode_segment(f.claims())
    signature = f.private_key.sign(
        signing_input.encode("ascii"),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    return signing_input + "." + b64url(signature)


def _tampered_payload(kit: Kit) -> str:
    header, payload, signature = kit.forger.token().split(".")
    claims = json.loads(b64url_decode(payload))
    claims["scope"] = "admin"
    return f"{header}.{encode_segment(claims)}.{signature}"


def _flipped_signature(kit: Kit) -> str:
    signing_input, signature = kit.forger.token().rsplit(".", 1)
    flipped = bytearray(b64url_decode(signature))
    flipped[len(flipped) // 2] ^= 0x01
    return signing_input + "." + b64url(bytes(flipped))


def _times(kit: Kit, **offsets: int) -> str:
    now = int(time.time())
    f = kit.forger
    return f.token(payload=f.claims(**{name: now + delta for name, delta in offsets.items()}))


def _claims(kit: Kit, **claims: Any) -> str:
    return kit.forger.token(payload=kit.forger.claims(**claims))


def _dropped(kit: Kit, claim: str) -> str:
    return kit.forger.token(payload=kit.forger.claims(drop=(claim,)))


def _header(kit: Kit, **members: Any) -> str:
    return kit.forger.token(header=kit.forger.header(**members))


def _without_typ(kit: Kit) -> str:
    return kit.forger.token(header=kit.forger.header(drop=("typ",)))


def _duplicate_claim(kit: Kit) -> str:
    payload = json.dumps(kit.forger.claims())[:-1] + ', "aud": "some-other-api"}'
    return kit.forger.token(payload=payload)


def _duplicate_header_member(kit: Kit) -> str:
    header = json.dumps(kit.forger.header())[:-1] + ', "alg": "none"}'
    return kit.forger.token(header=header)


def _oversized(kit: Kit) -> str:
    token = kit.forger.token(payload=kit.forger.claims(padding="p" * 6500))
    assert 8192 < len(token) < 10_000
    return token


BAD_TOKENS: list[Any] = [
    pytest.param(lambda kit: _unsigned(kit, "none"), id="alg-none-unsigned"),
    pytest.param(lambda kit: _unsigned(kit, "nOnE"), id="alg-none-mixed-case"),
    pytest.param(lambda kit: _header(kit, alg="none"), id="alg-none-with-rs256-signature"),
    pytest.param(_hs256_with_public_key, id="hs256-keyed-with-public-pem"),
    pytest.param(_ps256_with_our_key, id="ps256-with-our-key"),
    pytest.param(
        lambda kit: kit.forger.token(private_key=kit.attacker_key), id="attacker-key-our-kid"
    ),
    pytest.param(_tampered_payload, id="tampered-payload"),
    pytest.param(_flipped_signature, id="flipped-signature"),
    pytest.param(lambda kit: _times(kit, exp=-3600, iat=-7200, nbf=-7200), id="expired"),
    pytest.param(lambda kit: _times(kit, exp=-40, iat=-600, nbf=-600), id="expired-past-leeway"),
    pytest.param(lambda kit: _times(kit, nbf=120, exp=900), id="nbf-in-the-future"),
    pytest.param(lambda kit: _times(kit, iat=120, exp=900), id="iat-in-the-future"),
    pytest.param(lambda kit: _claims(kit, iss="https://evil.example"), id="wrong-iss"),
    pytest.param(lambda kit: _claims(kit, aud="some-other-api"), id="wrong-aud"),
    pytest.param(lambda kit: _claims(kit, aud=["a", "b"]), id="aud-list-without-ours"),
    pytest.param(lambda kit: _dropped(kit, "exp"), id="missing-exp"),
    pytest.param(lambda kit: _dropped(kit, "jti"), id="missing-jti"),
    pytest.param(lambda kit: kit.forger.with_claim_text("exp", '"9999999999"'), id="exp-string"),
    pytest.param(lambda kit: kit.forger.with_claim_text("exp", "1e308"), id="exp-1e308"),
    pytest.param(lambda kit: _header(kit, crit=["exp"]), id="unknown-crit"),
    pytest.param(lambda kit: _header(kit, typ="JWT"), id="typ-jwt"),
    pytest.param(
        lambda kit: kit.forger.token(header=kit.forger.header(drop=("typ",))), id="no-typ"
    ),
    pytest.param(lambda kit: _header(kit, kid="no-such-key"), id="unknown-kid"),
    pytest.param(lambda kit: _header(kit, kid=[kit.forger.kid]), id="kid-not-a-string"),
    pytest.param(lambda kit: kit.forger.token().rsplit(".", 1)[0], id="two-segments"),
    pytest.param(lambda kit: kit.forger.token() + "." + b64url(b"x"), id="four-segments"),
    pytest.param(_duplicate_claim, id="duplicate-claim"),
    pytest.param(_duplicate_header_member, id="duplicate-header-member"),
    pytest.param(_oversized, id="9-KB-token"),
    pytest.param(
        lambda kit: _header(kit, alg=["RS256"]),
        id="alg-is-a-list",
    ),
]


@pytest.mark.parametrize("make_token", BAD_TOKENS)
async def test_guard_refuses_exactly_as_the_gateway_does(
    make_token: Callable[[Kit], str],
    app: FastAPI,
    client: TestClient,
    settings: Settings,
    forger: Forger,
    signing_key: SigningKey,
    attacker_key: rsa.RSAPrivateKey,
) -> None:
    """The guard discovers the keys from the gateway app that ``client`` serves, reached over
    ASGI rather than a socket: the same documents, without a uvicorn per case."""
    token = make_token(Kit(forger, signing_key, attacker_key))
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url=settings.issuer) as http,
        gateway_validator(settings.issuer, http, refresh_interval=0) as validator,
    ):
        await assert_same_refusal(client, validator, token)
        # The positive control on the same validator: the forger's honest token passes.
        assert (await validator.validate(forger.token())).sub == forger.claims()["sub"]
        assert validator.jwks.jwks_url == settings.issuer + JWKS_PATH


async def test_expired_token_is_described_as_expired_by_both(
    live_gateway: str, client: TestClient, forger: Forger
) -> None:
    now = int(time.time())
    token = forger.token(payload=forger.claims(exp=now - 3600, iat=now - 7200, nbf=now - 7200))
    async with gateway_validator(live_gateway) as validator:
        error = await guard_refusal(validator, token)
    assert error.description == EXPIRED_TOKEN
    assert gateway_me(client, token).json()["error_description"] == EXPIRED_TOKEN


# --- headers that name a key source are never followed ---------------------------------------


def _key_source(
    member: str, attacker_key: rsa.RSAPrivateKey, document_server: DocumentServer
) -> Any:
    jwk = public_jwk(attacker_key.public_key()) | {"use": "sig", "alg": "RS256"}
    if member == "jku":
        return document_server.set_json("/attacker/jwks.json", {"keys": [jwk]})
    if member == "x5u":
        return document_server.set_json("/attacker/cert.pem", {"keys": [jwk]})
    if member == "jwk":
        return jwk
    der = attacker_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return [base64.b64encode(der).decode("ascii")]


@pytest.mark.parametrize("member", ["jku", "x5u", "jwk", "x5c"])
async def test_key_source_header_is_refused_and_never_fetched(
    member: str,
    live_gateway: str,
    client: TestClient,
    forger: Forger,
    attacker_key: rsa.RSAPrivateKey,
    document_server: DocumentServer,
) -> None:
    """Signed by the attacker, whose key the header names or points at; under the attacker's
    own kid (unknown to the issuer, which would otherwise allow a refetch) and under ours."""
    source = _key_source(member, attacker_key, document_server)
    attacker_kid = thumbprint(public_jwk(attacker_key.public_key()))
    for kid in (attacker_kid, forger.kid):
        token = forger.token(
            header=forger.header(kid=kid, **{member: source}), private_key=attacker_key
        )
        recorder = Recorder()
        async with (
            recorder.http,
            gateway_validator(live_gateway, recorder.http, refresh_interval=0) as validator,
        ):
            await assert_same_refusal(client, validator, token)
            assert validator.jwks.fetches == 1
        assert recorder.urls == [metadata_url(live_gateway), live_gateway + JWKS_PATH], kid
    assert document_server.total_hits == 0


async def test_unknown_kid_refetches_our_jwks_but_never_the_attackers(
    live_gateway: str,
    client: TestClient,
    forger: Forger,
    attacker_key: rsa.RSAPrivateKey,
    document_server: DocumentServer,
) -> None:
    """The control for the test above: without the refused header, an unknown kid makes the
    validator refetch the issuer's own JWKS (once), still never the address in the token."""
    attacker_jwk = public_jwk(attacker_key.public_key())
    document_server.set_json("/attacker/jwks.json", {"keys": [attacker_jwk]})
    token = forger.token(
        header=forger.header(kid=thumbprint(attacker_jwk)), private_key=attacker_key
    )
    recorder = Recorder()
    async with (
        recorder.http,
        gateway_validator(live_gateway, recorder.http, refresh_interval=0) as validator,
    ):
        await assert_same_refusal(client, validator, token)
        assert validator.jwks.fetches == 2
    assert document_server.total_hits == 0
    assert recorder.urls == [
        metadata_url(live_gateway),
        live_gateway + JWKS_PATH,
        live_gateway + JWKS_PATH,
    ]


class Switchable(httpx.AsyncBaseTransport):
    """The gateway app over ASGI, until the test takes it ``down`` (connections refused)."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.down = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


async def test_unknown_kid_while_the_gateway_is_down_is_503_and_401_once_it_answers(
    app: FastAPI,
    client: TestClient,
    settings: Settings,
    forger: Forger,
    attacker_key: rsa.RSAPrivateKey,
) -> None:
    """A kid the guard has not seen may be a key the gateway rotated in: while the gateway
    cannot be asked, the client is told to retry (503), not that its token is invalid; once
    the gateway answers without that kid, the token is refused as the gateway refuses it.
    (``client`` runs the lifespan of ``app``, which the guard reaches over ASGI.)"""
    token = forger.token(header=forger.header(kid="rotated-in"), private_key=attacker_key)
    transport = Switchable(app)
    async with (
        httpx.AsyncClient(transport=transport) as http,
        gateway_validator(settings.issuer, http, refresh_interval=0) as validator,
    ):
        assert (await validator.validate(forger.token())).sub == forger.claims()["sub"]
        transport.down = True
        with pytest.raises(TemporarilyUnavailableError) as info:
            await validator.validate(token)
        assert info.value.status_code == 503
        assert info.value.headers()["Retry-After"] == "5"
        # The keys the guard holds go on verifying while the gateway is down.
        assert (await validator.validate(forger.token())).sub == forger.claims()["sub"]

        transport.down = False
        await assert_same_refusal(client, validator, token)
        assert validator.jwks.fetches == 3


# --- symmetric keys never come from a JWKS ---------------------------------------------------


SECRET = b"a shared secret of thirty-two b!"


def _hs256_token(forger: Forger, kid: str) -> str:
    signing_input = (
        encode_segment(forger.header(alg="HS256", kid=kid)) + "." + encode_segment(forger.claims())
    )
    signature = hmac.new(SECRET, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


@pytest.mark.parametrize("kid", ["hs-key", "gateway-kid"])
async def test_oct_key_in_jwks_is_never_used(
    kid: str,
    forger: Forger,
    signing_key: SigningKey,
    settings: Settings,
    document_server: DocumentServer,
) -> None:
    hs_kid = forger.kid if kid == "gateway-kid" else kid
    oct_jwk = {"kty": "oct", "kid": hs_kid, "k": b64url(SECRET), "alg": "HS256", "use": "sig"}
    rsa_jwk = signing_key.public_jwk()
    assert rsa_jwk is not None
    # The oct key comes first: were it used, it would win the duplicate kid.
    url = document_server.set_json("/jwks.json", {"keys": [oct_jwk, rsa_jwk]})
    async with TokenValidator(settings.issuer, AUDIENCE, jwks_url=url) as validator:
        await guard_refusal(validator, _hs256_token(forger, hs_kid))
        assert validator.verifier.keys[forger.kid].algorithm == "RS256"
        assert "hs-key" not in validator.verifier.keys
        assert (await validator.validate(forger.token())).sub == forger.claims()["sub"]


# --- the validator's own options -------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithms",
    [
        pytest.param(("HS256",), id="hs256"),
        pytest.param((), id="empty"),
        pytest.param(("RS256", "HS256"), id="rs256-and-hs256"),
        pytest.param(("none",), id="none"),
        pytest.param(("RS512",), id="rs512"),
        pytest.param("RS256", id="bare-string"),
    ],
)
def test_unsupported_algorithms_are_refused_at_construction(algorithms: Any) -> None:
    with pytest.raises(ValueError, match="algorithms"):
        TokenValidator("https://issuer.example", AUDIENCE, algorithms=algorithms)


@pytest.mark.parametrize(
    ("min_ttl", "max_ttl"), [(0, 10), (-1, 10), (20, 10)], ids=["zero", "negative", "inverted"]
)
def test_invalid_ttl_bounds_are_refused_at_construction(min_ttl: float, max_ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        TokenValidator("https://issuer.example", AUDIENCE, min_ttl=min_ttl, max_ttl=max_ttl)


async def test_es256_only_validator_refuses_the_gateways_rs256_token(
    live_gateway: str, client: TestClient, user: dict[str, Any]
) -> None:
    token = access_token_for(client, user)
    async with gateway_validator(live_gateway, algorithms=("ES256",)) as validator:
        await guard_refusal(validator, token)
        assert validator.verifier.keys == {}  # the gateway's RSA key is not for ES256
        assert validator.jwks.fetches == 1


async def test_validator_for_another_audience_refuses_the_gateways_token(
    live_gateway: str, client: TestClient, user: dict[str, Any]
) -> None:
    token = access_token_for(client, user)
    async with TokenValidator(live_gateway, "billing-api") as validator:
        error = await guard_refusal(validator, token)
    assert error.description == INVALID_TOKEN


@pytest.mark.parametrize(
    "issuer",
    ["https://issuer.example/", "http://127.0.0.1:8000/tenant/x/", "https://issuer.example//"],
)
def test_issuer_ending_in_a_slash_is_refused_at_construction(issuer: str) -> None:
    """The gateway strips a trailing '/' from AUTHSVC_ISSUER, so no "iss" it signs ends in one:
    such a validator could never accept a token, and says so at once."""
    with pytest.raises(ValueError, match="issuer"):
        TokenValidator(issuer, AUDIENCE)


async def test_validator_for_another_issuer_never_uses_the_gateways_metadata(
    app: FastAPI, settings: Settings, client: TestClient, user: dict[str, Any]
) -> None:
    """The gateway's own metadata, fetched from the place RFC 8414 gives for another issuer,
    describes the gateway: §3.3 forbids using it, so its jwks_uri is never fetched."""
    other_issuer = "http://other-issuer.example"
    token = access_token_for(client, user)
    # Every request, whatever its host, reaches the gateway app.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport) as http:
        served = (await http.get(metadata_url(other_issuer))).json()
    assert served["issuer"] == settings.issuer != other_issuer
    recorder = Recorder(transport)
    async with recorder.http, gateway_validator(other_issuer, recorder.http) as validator:
        with pytest.raises(TemporarilyUnavailableError) as info:
            await validator.validate(token)
    assert info.value.status_code == 503
    assert recorder.urls == [metadata_url(other_issuer)]
    assert validator.jwks.jwks_url is None


@pytest.mark.parametrize(("leeway", "accepted"), [(30, True), (0, False)])
async def test_leeway_applies_to_expiry(
    leeway: int, accepted: bool, live_gateway: str, forger: Forger
) -> None:
    now = int(time.time())
    token = forger.token(payload=forger.claims(exp=now - 10, iat=now - 600, nbf=now - 600))
    async with gateway_validator(live_gateway, leeway=leeway) as validator:
        if accepted:
            assert (await validator.validate(token)).sub == forger.claims()["sub"]
        else:
            error = await guard_refusal(validator, token)
            assert error.description == EXPIRED_TOKEN
