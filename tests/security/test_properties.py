"""Hypothesis property tests: the token parser and the ``/oauth2/token`` form parser.

Any input, however malformed, ends in the service's own refusal and never in an exception:

- the access-token parser: ``AccessTokenVerifier.verify`` raises ``TokenValidationError``
  (or returns exactly the claims of a token we signed), ``token_from_authorization`` returns or
  raises an ``OAuth2Error``, and ``GET /users/me`` answers 401 with an RFC 6750 challenge.
- the token endpoint's form parser: ``parse_form`` and ``read_token_request`` return or
  raise an ``OAuth2Error`` coded ``invalid_request``, and ``POST /oauth2/token`` answers a 4xx
  with an RFC 6749 §5.2 error body whose status, code and challenge agree (with the failure
  limit off, on, and already reached).

The TestClient keeps its default ``raise_server_exceptions=True``: an exception in the app
fails the example. Inputs are derandomized (the same examples on every run, no example
database) so CI never fails on a draw a developer cannot replay.

Hypothesis refuses function-scoped fixtures under ``@given`` by default, since they are not
reset between examples. Here that is fine and intended, so that health check is suppressed
explicitly: every example is a refused request, and what one may leave behind (a failure
counted against the address) changes no property the next one checks (any 4xx, 429
included, is asserted by its shape; where the exact answer matters the limit is off, or
already reached before the first example).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlencode

import httpx2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, currently_in_test_context, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.types import Message

from authsvc.app import create_app
from authsvc.config import Settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.oauth2.bearer import token_from_authorization
from authsvc.oauth2.errors import (
    InvalidBearerRequestError,
    InvalidRequestError,
    InvalidTokenError,
    OAuth2Error,
)
from authsvc.oauth2.token_endpoint import (
    MAX_BODY_BYTES,
    TokenRequest,
    parse_form,
    read_token_request,
)
from authsvc.security.keys import SigningKey
from authsvc.security.network import Caller
from authsvc.security.tokens import (
    MAX_TOKEN_BYTES,
    AccessTokenVerifier,
    TokenValidationError,
    verification_key_from_signing_key,
)
from authsvc.services.clients import ClientService, NewClient
from tests.helpers import (
    AUDIENCE,
    EXPIRED_TOKEN,
    INVALID_TOKEN,
    ISSUER,
    TOKEN_URL,
    UNKNOWN_USER,
    USER_PASSWORD,
    assert_invalid_token,
    assert_not_authenticated,
    b64url,
    rs256_sign,
    within_one_window,
)

UNIT = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
HTTP = settings(UNIT, max_examples=100)

# Fixed times, so a token built from them is the same on every run: issued long ago, valid
# for decades.
ISSUED_AT = 1_700_000_000
EXPIRES_AT = 4_000_000_000

# The descriptions a signed token with odd claims may get on /users/me (token_checks).
REFUSAL_DESCRIPTIONS = {
    INVALID_TOKEN,
    EXPIRED_TOKEN,
    UNKNOWN_USER,
    "The access token was revoked",
    "The client is unknown",
}
# RFC 6749 §5.2, the codes the token endpoint may answer with.
TOKEN_ERRORS_400 = {
    "invalid_request",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
}
BASIC_CHALLENGE = 'Basic realm="authsvc"'
FORM = "application/x-www-form-urlencoded"


# --- JSON, segments and tokens ---------------------------------------------------------------

_json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities dump as NaN/Infinity: not JSON, must be refused
    | st.text(max_size=20)
    | st.sampled_from([2**53, -1, 0, 10**400, 1e308, -0.0, "", "RS256", "at+jwt", "none"])
)
json_values = st.recursive(
    _json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
CLAIM_NAMES = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "client_id"]
B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
HEADER_NAMES = ["alg", "kid", "typ", "crit", "jku", "jwk", "x5u", "x5c", "cty", "zip", "enc"]


def fixed_claims() -> dict[str, Any]:
    """Claims the verifier accepts (for a user that does not exist)."""
    return {
        "iss": ISSUER,
        "sub": "6f1c1c3e-1d0a-4c57-9d4e-0b9b1b8a0c11",
        "aud": AUDIENCE,
        "exp": EXPIRES_AT,
        "iat": ISSUED_AT,
        "nbf": ISSUED_AT,
        "jti": "0" * 32,
        "client_id": "public",
        "scope": "",
    }


def our_header(kid: str) -> dict[str, Any]:
    return {"alg": "RS256", "kid": kid, "typ": "at+jwt"}


def _edited(base: dict[str, Any], names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """``base`` with one member replaced by any JSON value, removed, or added."""

    def edit(name: str, value: Any, remove: bool) -> dict[str, Any]:
        edited = dict(base)
        if remove:
            edited.pop(name, None)
        else:
            edited[name] = value
        return edited

    return st.builds(
        edit,
        weighted((3, st.sampled_from(names)), (1, st.text(max_size=8))),
        json_values,
        st.sampled_from([False, False, True]),
    )


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each drawn about ``weight`` times as often as a weight of 1."""
    branches = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(branches).flatmap(lambda strategy: strategy)


def segment_texts(
    dicts: st.SearchStrategy[dict[str, Any]], others: st.SearchStrategy[Any] | None = None
) -> st.SearchStrategy[bytes]:
    """What a segment decodes to: mostly JSON text of a dict, else JSON of any other value,
    a dict with every member twice, or any bytes at all."""
    return weighted(
        (4, dicts.map(lambda value: json.dumps(value).encode())),
        (
            1,
            (dicts | (st.nothing() if others is None else others)).map(
                lambda value: json.dumps(value).encode()
            ),
        ),
        (1, dicts.filter(bool).map(lambda value: _doubled(value).encode())),
        (1, st.binary(max_size=64)),
    )


def _doubled(value: dict[str, Any]) -> str:
    members = json.dumps(value)[1:-1]
    return "{" + members + ", " + members + "}"


def encodings(raw: bytes, proper: int = 3) -> st.SearchStrategy[str]:
    """A segment as a token carries it: base64url as RFC 7515 says (unpadded, ``proper``
    times as often as each other form), padded, standard base64 (``+/``), or not encoded."""
    return st.sampled_from(
        [b64url(raw)] * proper
        + [
            base64.urlsafe_b64encode(raw).decode(),
            base64.b64encode(raw).decode(),
            raw.decode("latin-1"),
        ]
    )


def mostly_proper(raw: bytes) -> st.SearchStrategy[str]:
    return encodings(raw, proper=9)


def headers_of(kid: str) -> st.SearchStrategy[dict[str, Any]]:
    return weighted((1, st.just(our_header(kid))), (2, _edited(our_header(kid), HEADER_NAMES)))


def claims_sets() -> st.SearchStrategy[dict[str, Any]]:
    return weighted((1, st.just(fixed_claims())), (3, _edited(fixed_claims(), CLAIM_NAMES)))


def unsigned_tokens(kid: str) -> st.SearchStrategy[str]:
    """Three-part tokens (and some with another number of parts, or around the 8 KiB limit)
    whose signature is junk."""
    headers = segment_texts(headers_of(kid), json_values).flatmap(encodings)
    payloads = segment_texts(claims_sets(), json_values).flatmap(encodings)
    signatures = st.binary(max_size=300).flatmap(encodings)
    three = st.tuples(headers, payloads, signatures).map(".".join)
    other = st.lists(headers | payloads | signatures, max_size=6).map(".".join)
    long = st.tuples(three, st.integers(MAX_TOKEN_BYTES - 600, MAX_TOKEN_BYTES + 600)).map(
        lambda drawn: drawn[0] + "A" * max(0, drawn[1] - len(drawn[0]))
    )
    return weighted((6, three), (2, other), (1, long))


def signed_tokens(key: SigningKey) -> st.SearchStrategy[str]:
    """Tokens signed with our own key over any header and payload text: the signature holds,
    so every check after it is reached."""
    private_key = key.private_key
    assert isinstance(private_key, rsa.RSAPrivateKey)

    def sign(header: str, payload: str) -> str:
        signing_input = f"{header}.{payload}"
        # UTF-8, not rs256_sign's ASCII: an unencoded segment may hold any character.
        signature = private_key.sign(
            signing_input.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{b64url(signature)}"

    return st.builds(
        sign,
        segment_texts(headers_of(key.kid)).flatmap(mostly_proper),
        segment_texts(claims_sets(), json_values).flatmap(mostly_proper),
    )


def mutated(token: str) -> st.SearchStrategy[str]:
    """``token`` with a few characters replaced, inserted or deleted."""

    def apply(edits: list[tuple[int, int, str]]) -> str:
        text = token
        for position, operation, char in edits:
            at = position % (len(text) + 1)
            if operation == 0:
                text = text[:at] + char + text[at + 1 :]
            elif operation == 1:
                text = text[:at] + char + text[at:]
            else:
                text = text[:at] + text[at + 1 :]
        return text

    chars = weighted(
        (3, st.sampled_from(B64URL_ALPHABET)),
        (1, st.sampled_from(".=+/ ")),
        (1, st.characters(max_codepoint=0x2FF)),
    )
    edit = st.tuples(st.integers(0, 2000), st.integers(0, 2), chars)
    return st.lists(edit, min_size=1, max_size=4).map(apply)


def any_text() -> st.SearchStrategy[str]:
    return st.text(max_size=400) | st.binary(max_size=400).map(lambda raw: raw.decode("latin-1"))


SCHEMES = ["Bearer", "Bearer", "Bearer", "bearer", "BEARER", "Basic", "Bearer:", "Token", ""]


def authorization_values() -> st.SearchStrategy[str]:
    """Whole ``Authorization`` values: any text, or a scheme (mostly Bearer's spellings),
    any run of spaces and tabs, and any text or b64token-like run after it."""
    token_like = st.text(alphabet=B64URL_ALPHABET + ".~+/= \t", max_size=60)
    scheme_and_token = st.builds(
        lambda scheme, gap, token: scheme + gap + token,
        st.sampled_from(SCHEMES),
        st.sampled_from([" ", " ", " ", "  ", "\t", " \t", ""]),
        token_like | any_text(),
    )
    return weighted((1, any_text()), (3, scheme_and_token))


def payload_claims(token: str) -> Any:
    """What the token's payload segment says, decoded the way the verifier decodes it."""
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


@pytest.fixture
def verifier(signing_key: SigningKey) -> AccessTokenVerifier:
    """The verifier the app builds, for the test settings' issuer and audience and our key."""
    return AccessTokenVerifier(
        {signing_key.kid: verification_key_from_signing_key(signing_key)},
        algorithms=["RS256"],
        issuer=ISSUER,
        audience=AUDIENCE,
        cache_size=0,
    )


def event(name: str) -> None:
    """Count an outcome for ``--hypothesis-show-statistics``; a no-op outside a property."""
    if currently_in_test_context():
        hypothesis_event(name)


def _verify_or_refuse(verifier: AccessTokenVerifier, token: str) -> dict[str, Any] | None:
    """The claims, or None when refused with TokenValidationError; anything else propagates."""
    try:
        claims = verifier.verify(token)
    except TokenValidationError as exc:
        event(f"refused: {exc.reason[:40]}")
        return None
    event("verified")
    return claims


# --- the token parser, unit level ---------------------------------------------------------


@UNIT
@given(data=st.data())
def test_token_parser_verifier_refuses_any_text_with_its_own_error(
    verifier: AccessTokenVerifier, signing_key: SigningKey, data: st.DataObject
) -> None:
    """Any text, and any three segments of base64url JSON or bytes under our header: the
    verifier raises TokenValidationError and nothing else."""
    token = data.draw(any_text() | unsigned_tokens(signing_key.kid), label="token")

    with pytest.raises(TokenValidationError):
        verifier.verify(token)


@UNIT
@given(data=st.data())
def test_token_parser_verifier_on_signed_odd_claims_refuses_or_returns_exactly_them(
    verifier: AccessTokenVerifier, signing_key: SigningKey, data: st.DataObject
) -> None:
    """Tokens our key signed, over edited headers and claims, and such tokens with a few
    characters changed: refused with TokenValidationError, or the claims the payload says."""
    token = data.draw(
        signed_tokens(signing_key) | mutated(_well_formed(signing_key)), label="token"
    )

    claims = _verify_or_refuse(verifier, token)

    if claims is not None:
        assert claims == payload_claims(token)
        assert claims["iss"] == ISSUER
        assert claims["aud"] == AUDIENCE


def _well_formed(key: SigningKey) -> str:
    header = b64url(json.dumps(our_header(key.kid)).encode())
    payload = b64url(json.dumps(fixed_claims()).encode())
    assert isinstance(key.private_key, rsa.RSAPrivateKey)
    return f"{header}.{payload}.{rs256_sign(key.private_key, f'{header}.{payload}')}"


def test_token_parser_the_well_formed_token_verifies(
    verifier: AccessTokenVerifier, signing_key: SigningKey
) -> None:
    """Positive control: the token the mutations start from is accepted as it is."""
    assert verifier.verify(_well_formed(signing_key)) == fixed_claims()


@UNIT
@given(value=authorization_values())
def test_token_parser_authorization_header_parser_returns_or_raises_an_oauth2_error(
    value: str,
) -> None:
    """Any Authorization header value: no token (another scheme), a b64token, or a refusal."""
    try:
        token = token_from_authorization([value])
    except InvalidTokenError:
        scheme, _, _ = value.partition(" ")
        assert scheme.lower() == "bearer"
        return
    if token is None:
        assert value.partition(" ")[0].lower() != "bearer"
    else:
        assert token and token in value


@UNIT
@given(values=st.lists(authorization_values(), min_size=2, max_size=3))
def test_token_parser_two_authorization_headers_are_refused_as_invalid_request(
    values: list[str],
) -> None:
    with pytest.raises(InvalidBearerRequestError):
        token_from_authorization(values)


# --- the token parser, over HTTP ---------------------------------------------------------


def header_bytes(text: str) -> bytes:
    """Any text as a header value an HTTP client can send: UTF-8, without CR, LF or NUL."""
    return text.encode("utf-8").translate(None, b"\r\n\x00")


def get_me(client: TestClient, authorization: bytes) -> httpx2.Response:
    return client.get("/users/me", headers={b"Authorization": authorization})


@HTTP
@given(data=st.data())
def test_token_parser_users_me_answers_invalid_token_to_any_bearer_token(
    client: TestClient, signing_key: SigningKey, data: st.DataObject
) -> None:
    """``Authorization: Bearer <anything>``: 401 invalid_token with its challenge, never 5xx."""
    token = data.draw(any_text() | unsigned_tokens(signing_key.kid), label="token")

    assert_invalid_token(get_me(client, b"Bearer " + header_bytes(token)))


@HTTP
@given(data=st.data())
def test_token_parser_users_me_refuses_signed_tokens_with_odd_claims(
    client: TestClient, signing_key: SigningKey, data: st.DataObject
) -> None:
    """Tokens our key signed, with edited claims, for a user that does not exist: always a
    401 invalid_token whose challenge repeats the body's description."""
    token = data.draw(
        signed_tokens(signing_key) | mutated(_well_formed(signing_key)), label="token"
    )

    response = get_me(client, b"Bearer " + header_bytes(token))

    assert response.status_code == 401, response.text
    description = response.json()["error_description"]
    event(description)
    assert description in REFUSAL_DESCRIPTIONS
    assert_invalid_token(response, description)


@HTTP
@given(value=authorization_values().map(header_bytes).map(lambda raw: raw.strip(b" \t")))
def test_token_parser_users_me_answers_any_authorization_value_with_a_401_challenge(
    client: TestClient, value: bytes
) -> None:
    """Any single Authorization value: a bare challenge when the scheme is not Bearer, else
    401 invalid_token; never 400 (one header), never 5xx."""
    response = get_me(client, value)

    scheme = value.decode("latin-1").partition(" ")[0]
    if scheme.lower() == "bearer":
        assert_invalid_token(response)
    else:
        assert_not_authenticated(response)


# --- the form parser, unit level ---------------------------------------------------------

FIELD_NAMES = [
    "grant_type",
    "username",
    "password",
    "refresh_token",
    "scope",
    "client_id",
    "client_secret",
    "token",
]
GRANT_TYPES = ["password", "refresh_token", "client_credentials", "authorization_code", ""]
JUNK = ["%", "%z", "%zz", "%ff", "%c3%28", "%00", "&", "&&", "=", "==", "+", ";", "\x00", "\xff"]


def form_values() -> st.SearchStrategy[str]:
    return weighted(
        (3, st.text(max_size=40)),
        (1, st.sampled_from(GRANT_TYPES)),
        (1, st.sampled_from([100, 4000, 20000]).map(lambda n: "x" * n)),
    )


def form_bodies(values: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    """Mostly well-formed forms (each grant with the fields it needs, or one grant_type with
    any other fields and a few unknown ones), then such forms with percent-encoding junk
    spliced in, forms of repeated and random names sent unencoded, and any bytes."""
    well_formed = st.builds(
        lambda known, unknown: [*known.items(), *unknown],
        st.fixed_dictionaries(
            {"grant_type": st.sampled_from(GRANT_TYPES)},
            optional={name: values for name in FIELD_NAMES if name != "grant_type"},
        ),
        st.lists(st.tuples(st.text(max_size=12), values), max_size=2),
    ).map(lambda items: urlencode(items, quote_via=quote))
    any_pairs = st.lists(
        st.tuples(st.sampled_from(FIELD_NAMES) | st.text(max_size=12), values), max_size=8
    )
    unencoded = any_pairs.map(lambda items: "&".join(f"{name}={value}" for name, value in items))

    def splice(form: str, junk: list[tuple[int, str]]) -> str:
        for position, piece in junk:
            at = position % (len(form) + 1)
            form = form[:at] + piece + form[at:]
        return form

    junk = st.lists(st.tuples(st.integers(0, 500), st.sampled_from(JUNK)), min_size=1, max_size=3)
    complete = st.sampled_from(
        [
            ("password", ("username", "password")),
            ("refresh_token", ("refresh_token",)),
            ("client_credentials", ("client_id", "client_secret")),
        ]
    ).flatmap(
        lambda grant: st.fixed_dictionaries(
            {"grant_type": st.just(grant[0]), **dict.fromkeys(grant[1], values)},
            optional={name: values for name in ("scope", "client_id") if name not in grant[1]},
        )
    )
    return weighted(
        (3, complete.map(lambda form: urlencode(form, quote_via=quote).encode())),
        (3, well_formed.map(str.encode)),
        (2, st.builds(splice, well_formed, junk).map(_utf8)),
        (2, st.builds(splice, unencoded, junk | st.just([])).map(_utf8)),
        (1, st.binary(max_size=600)),
    )


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # lone surrogates: bytes no decoder accepts


@UNIT
@given(body=form_bodies(form_values()))
def test_token_form_parse_form_returns_parameters_or_raises_invalid_request(body: bytes) -> None:
    """Any body: each parameter once with a non-empty value, or InvalidRequestError."""
    try:
        params = parse_form(body)
    except InvalidRequestError as exc:
        assert exc.status_code == 400
        assert exc.body()["error"] == "invalid_request"
        return
    assert all(isinstance(name, str) and isinstance(value, str) for name, value in params.items())
    assert all(value != "" for value in params.values())


CONTENT_TYPES = [
    None,
    FORM,
    f"{FORM}; charset=utf-8",
    FORM.upper(),
    f" {FORM} ",
    "application/json",
    "text/plain",
    "multipart/form-data; boundary=x",
    f"{FORM}x",
]


def content_types() -> st.SearchStrategy[bytes | None]:
    return st.sampled_from(CONTENT_TYPES).map(
        lambda value: None if value is None else value.encode()
    ) | (any_text().map(header_bytes))


def authorizations() -> st.SearchStrategy[bytes | None]:
    credentials = st.tuples(st.text(max_size=20), st.text(max_size=20)).map(
        lambda pair: b"Basic " + base64.b64encode(f"{pair[0]}:{pair[1]}".encode())
    )
    return st.none() | credentials | any_text().map(header_bytes)


def _request(
    headers: list[tuple[bytes, bytes]], query: bytes, chunks: list[bytes], disconnect: bool
) -> Request:
    messages: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks
    ]
    messages.append(
        {"type": "http.disconnect"}
        if disconnect
        else {"type": "http.request", "body": b"", "more_body": False}
    )

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "method": "POST",
        "path": TOKEN_URL,
        "raw_path": TOKEN_URL.encode(),
        "root_path": "",
        "scheme": "http",
        "query_string": query,
        "headers": headers,
        "client": ("192.0.2.1", 50000),
        "server": ("testserver", 80),
        "http_version": "1.1",
    }
    return Request(scope, receive)


def _chunked(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(body) + 1) for cut in cuts} | {0, len(body)})
    return [body[start:end] for start, end in itertools.pairwise(points)]


@UNIT
@given(
    body=form_bodies(form_values()),
    content_type=content_types(),
    authorization=st.lists(authorizations(), max_size=2),
    query=st.sampled_from([b"", b"", b"password=x", b"%zz"]),
    cuts=st.lists(st.integers(0, 30000), max_size=4),
    disconnect=st.booleans(),
)
def test_token_form_read_token_request_returns_a_request_or_raises_invalid_request(
    body: bytes,
    content_type: bytes | None,
    authorization: list[bytes | None],
    query: bytes,
    cuts: list[int],
    disconnect: bool,
) -> None:
    """Any headers, query and body, delivered in any chunks or cut off: a TokenRequest, or
    an OAuth2Error coded invalid_request (400, or 413 for a body over the cap)."""
    headers = [] if content_type is None else [(b"content-type", content_type)]
    headers += [(b"authorization", value) for value in authorization if value is not None]
    request = _request(headers, query, _chunked(body, cuts), disconnect)

    try:
        parsed = asyncio.run(read_token_request(request, Caller(ip="192.0.2.1", user_agent=None)))
    except OAuth2Error as exc:
        # 400, or 413 for a body over the cap; invalid_request either way.
        assert exc.error == "invalid_request"
        assert exc.status_code == 400 or (exc.status_code == 413 and len(body) > MAX_BODY_BYTES)
        return
    assert isinstance(parsed, TokenRequest)
    assert query == b""
    assert not disconnect
    assert len(body) <= MAX_BODY_BYTES
    assert parse_form(body) == parsed.params


# --- the form parser, over HTTP ----------------------------------------------------------


def assert_token_endpoint_error(response: httpx2.Response) -> None:
    """A 4xx with an RFC 6749 §5.2 body, never cached, whose status, code and challenge agree:
    401 invalid_client with the Basic challenge, 429 invalid_request with Retry-After, 413
    invalid_request (a body over the cap), else 400 with one of the §5.2 codes."""
    assert 400 <= response.status_code < 500, response.text
    assert response.headers.get("content-type") == "application/json"
    assert response.headers.get("cache-control") == "no-store"
    assert response.headers.get("pragma") == "no-cache"
    body = response.json()
    event(f"{response.status_code} {body.get('error')}")  # see --hypothesis-show-statistics
    assert set(body) <= {"error", "error_description"}
    assert isinstance(body.get("error_description", ""), str)
    if response.status_code == 401:
        assert body["error"] == "invalid_client"
        assert response.headers["www-authenticate"] == BASIC_CHALLENGE
        return
    assert "www-authenticate" not in response.headers
    if response.status_code == 429:
        assert body["error"] == "invalid_request"
        assert int(response.headers["retry-after"]) > 0
        return
    if response.status_code == 413:
        assert body["error"] == "invalid_request"
        return
    assert response.status_code == 400, response.text
    assert body["error"] in TOKEN_ERRORS_400


def post_token(
    client: TestClient,
    body: bytes,
    content_type: bytes | None,
    authorization: bytes | None = None,
    query: str = "",
) -> httpx2.Response:
    headers: dict[bytes, bytes] = {}
    if content_type is not None:
        headers[b"Content-Type"] = content_type
    if authorization is not None:
        headers[b"Authorization"] = authorization
    return client.post(TOKEN_URL + query, content=body, headers=headers)


@HTTP
@given(
    body=st.binary(max_size=2000),
    content_type=weighted((3, st.just(FORM.encode())), (2, content_types())),
)
def test_token_form_token_endpoint_answers_any_bytes_with_an_oauth_error(
    client: TestClient, body: bytes, content_type: bytes | None
) -> None:
    """Any bytes under any (or no) Content-Type: a 4xx RFC 6749 error, never 5xx."""
    assert_token_endpoint_error(post_token(client, body, content_type))


@pytest.fixture
def unthrottled_client(
    make_settings: Callable[..., Settings], migrated: None
) -> Iterator[TestClient]:
    """An app without the failure limit or the lockout, so that every example reaches the
    grants instead of the 429 the limit answers after the first twenty failures."""
    app = create_app(make_settings(rate_limit_failures=0, lockout_threshold=0))
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def registered_client_id(settings: Settings, migrated: None) -> Iterator[str]:
    """A confidential client whose secret no example knows."""
    engine = build_engine(settings)
    try:
        with build_sessionmaker(engine)() as session:
            client, _ = ClientService(session).create(
                NewClient(name="rs", grant_types=("client_credentials", "password"))
            )
            yield client.client_id
    finally:
        engine.dispose()


def _no_known_password(value: str) -> bool:
    return USER_PASSWORD not in value


@HTTP
@given(data=st.data())
def test_token_form_token_endpoint_answers_any_form_with_an_oauth_error(
    unthrottled_client: TestClient,
    user: dict[str, Any],
    registered_client_id: str,
    data: st.DataObject,
) -> None:
    """Forms of known and random fields (a real username and client id among the values,
    never their secrets), repeated fields, percent-encoding junk and huge values, with any
    Content-Type and Authorization and sometimes a query string: a 4xx RFC 6749 error."""
    values = (
        form_values() | st.sampled_from([user["username"], registered_client_id, "public"])
    ).filter(_no_known_password)
    body = data.draw(form_bodies(values), label="body")
    content_type = data.draw(
        weighted((4, st.just(FORM.encode())), (1, content_types())), label="content_type"
    )
    credentials = st.tuples(st.just(registered_client_id), st.text(max_size=20)).map(
        lambda pair: b"Basic " + base64.b64encode(f"{pair[0]}:{pair[1]}".encode())
    )
    authorization = data.draw(
        weighted((3, st.none()), (1, credentials), (1, authorizations())), label="authorization"
    )
    query = data.draw(
        weighted((6, st.just("")), (1, st.sampled_from(["?grant_type=password", "?"]))),
        label="query",
    )

    response = post_token(unthrottled_client, body, content_type, authorization, query)

    assert_token_endpoint_error(response)


@HTTP
@given(body=form_bodies(form_values()))
def test_token_form_token_endpoint_of_the_default_app_answers_any_form_with_an_oauth_error(
    client: TestClient, body: bytes
) -> None:
    """The default app (failure limit and lockout on): any form body, a 4xx RFC 6749 error."""
    assert_token_endpoint_error(post_token(client, body, FORM.encode()))


LIMIT_WINDOW = 3600


@pytest.fixture
def throttled_client(
    make_settings: Callable[..., Settings], migrated: None
) -> Iterator[TestClient]:
    """An app whose failure limit (3 per hour) this address has already reached."""
    app = create_app(make_settings(rate_limit_failures=3, rate_limit_window=LIMIT_WINDOW))
    # The counts are per fixed window: the whole test must fit in the one it starts in.
    within_one_window(LIMIT_WINDOW, needed=60)
    with TestClient(app) as test_client:
        wrong = {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"}
        for _ in range(3):
            assert test_client.post(TOKEN_URL, data=wrong).status_code == 401
        yield test_client


@HTTP
@given(data=st.data())
def test_token_form_token_endpoint_over_the_failure_limit_answers_any_request_with_429(
    throttled_client: TestClient, data: st.DataObject
) -> None:
    """Once the address reached the limit, any request (body, Content-Type, Authorization)
    gets 429 invalid_request with Retry-After, before anything in it is parsed."""
    body = data.draw(form_bodies(form_values()), label="body")
    content_type = data.draw(content_types(), label="content_type")
    authorization = data.draw(authorizations(), label="authorization")

    response = post_token(throttled_client, body, content_type, authorization)

    assert response.status_code == 429, response.text
    assert_token_endpoint_error(response)


def test_token_form_the_error_check_accepts_only_oauth_errors(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    """Self-check of ``assert_token_endpoint_error``: a success, a FastAPI 422 or a bearer
    challenge fails it; a token endpoint refusal passes."""
    with pytest.raises(AssertionError):
        assert_token_endpoint_error(client.get("/healthz"))
    unprocessable = client.get("/admin/users", params={"offset": "x"}, headers=admin_headers)
    assert unprocessable.status_code == 422
    with pytest.raises(AssertionError):
        assert_token_endpoint_error(unprocessable)
    with pytest.raises(AssertionError):
        assert_token_endpoint_error(get_me(client, b"Bearer x"))
    refused = post_token(client, b"grant_type=password&username=nobody", FORM.encode())
    assert_token_endpoint_error(refused)
    assert refused.json()["error"] == "invalid_request"
