"""``IntrospectionValidator`` (RFC 7662) and the live dependencies that use it.

Against the real gateway (``live_gateway``, with a confidential client registered through the
admin API) for what the gateway says about revoked, disabled, narrowed and refresh tokens; and
against canned answers (``document_server``, or an ``httpx.MockTransport``) for what the
validator must do with answers the gateway would never give.

Time-dependent cases inject a clock into the validator instead of sleeping, except one that
sleeps through a real 0.3 s TTL end to end.

The validator asks about a token only if it has the shape of one of the issuer's access tokens
(three segments, an at+jwt header, typed claims, our ``iss`` and ``aud``, not expired); the
canned answers are therefore about ``shaped()`` tokens, which carry no valid signature: the
validator does no crypto, the issuer does.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import logging
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, quote_plus

import anyio
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from authsvc.guard import (
    CurrentPrincipal,
    IntrospectionValidator,
    LivePrincipal,
    Principal,
    TokenValidator,
    install_guard,
    require_scopes,
)
from authsvc.guard.introspection import basic_credentials
from authsvc.oauth2.client_auth import parse_basic_credentials
from authsvc.oauth2.errors import InvalidTokenError, TemporarilyUnavailableError
from tests.guard.conftest import DocumentServer
from tests.helpers import (
    AUDIENCE,
    access_token_for,
    assert_insufficient_scope,
    assert_invalid_token,
    assert_no_store,
    b64url,
    basic,
    bearer,
    client_credentials_token,
    create_client,
    encode_segment,
    password_login,
)
from tests.live_server import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REPORTS = "reports:read"
TTL = 0.3
INTROSPECT_PATH = "/introspect"
OTHER_ISSUER = "https://issuer.example"
ISSUER_UNAVAILABLE = {
    "error": "temporarily_unavailable",
    "error_description": "The token issuer is unavailable",
}


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def unreachable_issuer() -> str:
    """A loopback URL nothing listens on (the port was free a moment ago)."""
    return f"http://127.0.0.1:{free_port()}"


def create_scope(client: TestClient, admin_headers: dict[str, str], name: str) -> None:
    response = client.post(
        "/admin/scopes", headers=admin_headers, json={"name": name, "description": name}
    )
    assert response.status_code == 201, response.text


@pytest.fixture
def downstream_service(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``examples/downstream_service.py``, which is a script directory, not a package."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module("downstream_service")


# --- a small downstream app with local and live routes ------------------------------------------


def build_app(issuer: str, live: IntrospectionValidator) -> FastAPI:
    app = FastAPI()
    install_guard(app, TokenValidator(issuer, AUDIENCE), live=live)

    def describe(principal: Principal) -> dict[str, Any]:
        return {
            "sub": principal.sub,
            "username": principal.username,
            "scopes": sorted(principal.scopes),
            "client_id": principal.client_id,
        }

    @app.get("/me")
    async def me(principal: CurrentPrincipal) -> dict[str, Any]:
        return describe(principal)

    @app.get("/reports", dependencies=[require_scopes(REPORTS)])
    async def reports() -> dict[str, str]:
        return {"reports": "local"}

    @app.get("/live/me")
    async def live_me(principal: LivePrincipal) -> dict[str, Any]:
        return describe(principal)

    @app.get("/live/reports", dependencies=[require_scopes(REPORTS, live=True)])
    async def live_reports() -> dict[str, str]:
        return {"reports": "live"}

    return app


@dataclass
class LiveService:
    client: TestClient
    validator: IntrospectionValidator
    clock: FakeClock


@pytest.fixture
def rs(client: TestClient, admin_headers: dict[str, str]) -> dict[str, Any]:
    """The downstream's confidential client at the gateway (introspection needs one)."""
    return create_client(client, admin_headers, "downstream")


@pytest.fixture
def live_service(live_gateway: str, rs: dict[str, Any]) -> Iterator[LiveService]:
    clock = FakeClock()
    validator = IntrospectionValidator(
        live_gateway, AUDIENCE, rs["client_id"], rs["client_secret"], cache_ttl=TTL, clock=clock
    )
    with TestClient(build_app(live_gateway, validator)) as test_client:
        yield LiveService(test_client, validator, clock)


@pytest.fixture
def reporter(
    client: TestClient, admin_headers: dict[str, str], make_user: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    create_scope(client, admin_headers, REPORTS)
    return make_user("reporter", scopes=(REPORTS,))


def revoke(client: TestClient, token: str) -> None:
    response = client.post("/oauth2/revoke", data={"token": token})
    assert response.status_code == 200, response.text


# --- the example app with client credentials -------------------------------------------------


def test_example_live_me_answers_from_introspection(
    live_gateway: str,
    downstream_service: ModuleType,
    rs: dict[str, Any],
    client: TestClient,
    user: dict[str, Any],
) -> None:
    app = downstream_service.create_app(
        live_gateway, AUDIENCE, client_id=rs["client_id"], client_secret=rs["client_secret"]
    )
    with TestClient(app) as example:
        response = example.get("/live/me", headers=bearer(access_token_for(client, user)))

    assert response.status_code == 200, response.text
    assert response.json() == {
        "sub": user["id"],
        "username": "alice",
        "scopes": [],
        "client_id": "public",
    }


def test_example_without_client_credentials_has_no_live_route(
    downstream_service: ModuleType,
) -> None:
    with TestClient(downstream_service.create_app(unreachable_issuer(), AUDIENCE)) as example:
        assert example.get("/live/me", headers=bearer("a.b.c")).status_code == 404


# --- what the gateway takes back, live routes see within the TTL --------------------------------


def test_revoked_token_is_refused_by_live_route_after_ttl_but_local_jwt_route_cannot_see_it(
    live_service: LiveService, client: TestClient, user: dict[str, Any]
) -> None:
    token = access_token_for(client, user)
    headers = bearer(token)
    assert live_service.client.get("/live/me", headers=headers).status_code == 200
    assert live_service.validator.calls == 1

    revoke(client, token)

    # Within the TTL the cached answer still stands: no new call to the gateway.
    live_service.clock.advance(TTL - 0.05)
    assert live_service.client.get("/live/me", headers=headers).status_code == 200
    assert live_service.validator.calls == 1

    live_service.clock.advance(0.1)
    assert_invalid_token(live_service.client.get("/live/me", headers=headers))
    assert live_service.validator.calls == 2

    # Local JWT validation only checks signature and claims: the revoked token still passes.
    assert live_service.client.get("/me", headers=headers).status_code == 200


def test_revoked_token_is_refused_after_a_real_ttl_elapses(
    live_gateway: str, rs: dict[str, Any], client: TestClient, user: dict[str, Any]
) -> None:
    validator = IntrospectionValidator(
        live_gateway, AUDIENCE, rs["client_id"], rs["client_secret"], cache_ttl=TTL
    )
    token = access_token_for(client, user)
    with TestClient(build_app(live_gateway, validator)) as service:
        assert service.get("/live/me", headers=bearer(token)).status_code == 200
        revoke(client, token)
        time.sleep(TTL + 0.1)
        assert_invalid_token(service.get("/live/me", headers=bearer(token)))
    assert validator.calls == 2


def test_disabled_user_is_refused_by_live_route_after_ttl(
    live_service: LiveService,
    client: TestClient,
    admin_headers: dict[str, str],
    user: dict[str, Any],
) -> None:
    headers = bearer(access_token_for(client, user))
    assert live_service.client.get("/live/me", headers=headers).status_code == 200

    response = client.patch(
        f"/admin/users/{user['id']}", headers=admin_headers, json={"is_active": False}
    )
    assert response.status_code == 200, response.text
    assert live_service.client.get("/live/me", headers=headers).status_code == 200  # cached

    live_service.clock.advance(TTL + 0.1)
    assert_invalid_token(live_service.client.get("/live/me", headers=headers))
    assert live_service.client.get("/me", headers=headers).status_code == 200  # local: unseen


def test_removed_scope_is_refused_by_live_route_after_ttl_but_not_by_local_route(
    live_service: LiveService,
    client: TestClient,
    admin_headers: dict[str, str],
    reporter: dict[str, Any],
) -> None:
    headers = bearer(access_token_for(client, reporter))
    assert live_service.client.get("/live/reports", headers=headers).status_code == 200

    response = client.patch(
        f"/admin/users/{reporter['id']}", headers=admin_headers, json={"scopes": []}
    )
    assert response.status_code == 200, response.text
    live_service.clock.advance(TTL + 0.1)

    assert_insufficient_scope(
        live_service.client.get("/live/reports", headers=headers), scope=REPORTS
    )
    assert live_service.client.get("/reports", headers=headers).status_code == 200


def test_refresh_token_presented_as_bearer_is_refused_although_introspection_says_active(
    live_service: LiveService, client: TestClient, rs: dict[str, Any], user: dict[str, Any]
) -> None:
    refresh_token = password_login(client, "alice", user["password"])["refresh_token"]
    answer = client.post(
        "/oauth2/introspect",
        data={"token": refresh_token},
        headers=basic(rs["client_id"], rs["client_secret"]),
    ).json()
    assert (answer["active"], answer["token_type"]) == (True, "refresh_token")

    response = live_service.client.get("/live/me", headers=bearer(refresh_token))

    assert_invalid_token(response)
    # An opaque refresh token does not even look like an access token: refused without asking
    # (an active answer about one is refused too: see the token_type cases below).
    assert live_service.validator.calls == 0


# --- the principal an introspection answer makes ---------------------------------------------


def test_discovered_endpoint_answers_with_the_users_principal(
    live_service: LiveService, live_gateway: str, client: TestClient, reporter: dict[str, Any]
) -> None:
    """Without ``introspection_url`` the endpoint comes from the gateway's RFC 8414 metadata."""
    assert live_service.validator.introspection_url is None

    response = live_service.client.get(
        "/live/me", headers=bearer(access_token_for(client, reporter))
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "sub": reporter["id"],
        "username": "reporter",
        "scopes": [REPORTS],
        "client_id": "public",
    }
    assert live_service.validator.introspection_url == f"{live_gateway}/oauth2/introspect"


def test_principal_from_gateway_answer_for_a_client_credentials_token(
    live_service: LiveService, client: TestClient, rs: dict[str, Any]
) -> None:
    token = client_credentials_token(client, rs)

    response = live_service.client.get("/live/me", headers=bearer(token))

    assert response.status_code == 200, response.text
    assert response.json() == {
        "sub": rs["client_id"],
        "username": None,
        "scopes": [],
        "client_id": rs["client_id"],
    }


# --- an operator's mistake: wrong client secret ------------------------------------------------


def test_wrong_client_secret_is_503_and_logged_without_secrets(
    live_gateway: str,
    rs: dict[str, Any],
    client: TestClient,
    user: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="authsvc")
    wrong_secret = "wrong-" + rs["client_secret"]
    validator = IntrospectionValidator(live_gateway, AUDIENCE, rs["client_id"], wrong_secret)
    token = access_token_for(client, user)

    with TestClient(build_app(live_gateway, validator)) as service:
        first = service.get("/live/me", headers=bearer(token))
        second = service.get("/live/me", headers=bearer(token))

    for response in (first, second):
        assert response.status_code == 503
        assert response.json() == ISSUER_UNAVAILABLE
        assert response.headers["retry-after"] == "5"
        assert_no_store(response)
    assert validator.calls == 2  # failures are not cached
    guard_messages = [r.getMessage() for r in caplog.records if r.name == "authsvc.guard"]
    assert "introspection answered 401" in guard_messages
    logged = caplog.text + "".join(record.getMessage() for record in caplog.records)
    for secret in (token, wrong_secret, rs["client_secret"]):
        assert secret not in logged


# --- canned answers ------------------------------------------------------------------------
#
# ``document_server`` serves them over real HTTP but costs half a second to stop, so the many
# cases about the shape of an answer use the same canned answers through an
# ``httpx.MockTransport``; a few ``document_server`` tests keep the real HTTP path covered.


@dataclass
class CannedIssuer:
    """Canned responses by path through an ``httpx.MockTransport``, with hit counts."""

    base_url: str = OTHER_ISSUER
    routes: dict[str, tuple[int, bytes, str]] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(transport=httpx.MockTransport(self._handle))

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.hits[request.url.path] += 1
        status, body, content_type = self.routes.get(
            request.url.path, (404, b"{}", "application/json")
        )
        return httpx.Response(status, content=body, headers={"Content-Type": content_type})

    def set_json(self, path: str, document: Any, status: int = 200) -> None:
        self.routes[path] = (status, json.dumps(document).encode(), "application/json")

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture
def canned() -> Iterator[CannedIssuer]:
    issuer = CannedIssuer()
    yield issuer
    anyio.run(issuer.http.aclose)


def shaped(
    issuer: str = OTHER_ISSUER,
    *,
    header: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    """A token of the shape the issuer's access tokens have, with a signature nobody made:
    enough for the validator to ask about it. ``claims`` override, ``drop`` removes; a
    ``header`` member given as ``None`` is removed."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": issuer,
        "sub": "user-1",
        "aud": AUDIENCE,
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": uuid.uuid4().hex,
        "client_id": "web",
        "scope": "reports:read orders:write",
        **claims,
    }
    for name in drop:
        del payload[name]
    head = {"alg": "RS256", "kid": "gateway-key", "typ": "at+jwt", **(header or {})}
    head = {name: value for name, value in head.items() if value is not None}
    return f"{encode_segment(head)}.{encode_segment(payload)}.{b64url(b'no signature here')}"


def introspector(documents: DocumentServer | CannedIssuer, **kwargs: Any) -> IntrospectionValidator:
    if isinstance(documents, CannedIssuer):
        kwargs.setdefault("http_client", documents.http)
    return IntrospectionValidator(
        OTHER_ISSUER,
        AUDIENCE,
        "downstream",
        "secret",
        introspection_url=documents.url(INTROSPECT_PATH),
        **kwargs,
    )


# --- answers the validator cannot use: 503 ---------------------------------------------------

UNUSABLE = {
    "500": (500, b'{"error": "server_error"}', "application/json"),
    "502-text": (502, b"Bad Gateway", "text/plain"),
    "401": (401, b'{"error": "invalid_client"}', "application/json"),
    "302": (302, b"", "text/plain"),
    "html": (200, b"<html>not json</html>", "text/html"),
    "empty": (200, b"", "application/json"),
    "json-array": (200, b'[{"active": true}]', "application/json"),
    "json-string": (200, b'"active"', "application/json"),
    "json-null": (200, b"null", "application/json"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(UNUSABLE))
async def test_unusable_endpoint_answer_is_temporarily_unavailable(
    canned: CannedIssuer, case: str
) -> None:
    canned.routes[INTROSPECT_PATH] = UNUSABLE[case]
    validator = introspector(canned)
    token = shaped()
    with pytest.raises(TemporarilyUnavailableError) as caught:
        await validator.validate(token)
    with pytest.raises(TemporarilyUnavailableError):
        await validator.validate(token)

    assert caught.value.status_code == 503
    assert validator.calls == 2  # an unusable answer is not cached
    assert canned.hits[INTROSPECT_PATH] == 2


@pytest.mark.anyio
async def test_real_http_500_non_json_and_json_array_are_temporarily_unavailable(
    document_server: DocumentServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="authsvc.guard")
    async with introspector(document_server) as validator:
        for case in ("500", "html", "json-array"):
            status, body, content_type = UNUSABLE[case]
            document_server.routes[INTROSPECT_PATH] = (
                status,
                body,
                {"Content-Type": content_type},
            )
            with pytest.raises(TemporarilyUnavailableError):
                await validator.validate(shaped())

    assert validator.calls == 3
    assert document_server.hits[INTROSPECT_PATH] == 3
    assert [record.getMessage() for record in caplog.records] == [
        "introspection answered 500",
        "introspection answered something that is not a JSON object",
        "introspection answered something that is not a JSON object",
    ]


def test_unusable_answer_reaches_the_caller_as_503(canned: CannedIssuer) -> None:
    canned.routes[INTROSPECT_PATH] = UNUSABLE["500"]
    with TestClient(build_app(unreachable_issuer(), introspector(canned))) as service:
        response = service.get("/live/me", headers=bearer(shaped()))

    assert response.status_code == 503
    assert response.json() == ISSUER_UNAVAILABLE
    assert response.headers["retry-after"] == "5"


@pytest.mark.anyio
async def test_unreachable_endpoint_is_temporarily_unavailable() -> None:
    url = unreachable_issuer() + INTROSPECT_PATH
    async with IntrospectionValidator(
        OTHER_ISSUER, AUDIENCE, "downstream", "secret", introspection_url=url
    ) as validator:
        with pytest.raises(TemporarilyUnavailableError):
            await validator.validate(shaped())
    assert validator.calls == 1


METADATA_PATH = "/.well-known/oauth-authorization-server"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "metadata",
    [
        {"token_endpoint": "/token"},
        {"introspection_endpoint": ""},
        {"introspection_endpoint": 42},
        {
            "issuer": "https://another.example",
            "introspection_endpoint": OTHER_ISSUER + INTROSPECT_PATH,
        },
    ],
    ids=["missing", "empty", "not-a-string", "another-issuers-metadata"],
)
async def test_metadata_without_a_usable_introspection_endpoint_is_temporarily_unavailable(
    canned: CannedIssuer, metadata: dict[str, Any]
) -> None:
    canned.set_json(METADATA_PATH, {"issuer": OTHER_ISSUER, **metadata})
    canned.set_json(INTROSPECT_PATH, answer())
    validator = IntrospectionValidator(
        OTHER_ISSUER, AUDIENCE, "downstream", "secret", http_client=canned.http
    )
    with pytest.raises(TemporarilyUnavailableError):
        await validator.validate(shaped())

    assert validator.introspection_url is None
    assert canned.hits[INTROSPECT_PATH] == 0


@pytest.mark.anyio
async def test_discovered_endpoint_is_remembered(document_server: DocumentServer) -> None:
    issuer = document_server.base_url
    document_server.set_json(
        METADATA_PATH, {"issuer": issuer, "introspection_endpoint": issuer + INTROSPECT_PATH}
    )
    document_server.set_json(INTROSPECT_PATH, answer(iss=issuer))
    async with IntrospectionValidator(issuer, AUDIENCE, "downstream", "secret") as validator:
        for _ in range(3):
            assert (await validator.validate(shaped(issuer))).sub == "user-1"

    assert validator.introspection_url == issuer + INTROSPECT_PATH
    assert document_server.hits[METADATA_PATH] == 1
    assert document_server.hits[INTROSPECT_PATH] == 3


# --- answers about tokens the validator must not trust: 401 ---------------------------------------


def answer(**overrides: Any) -> dict[str, Any]:
    """A good answer about an access token for OTHER_ISSUER; ``None`` drops a member."""
    now = int(time.time())
    document: dict[str, Any] = {
        "active": True,
        "token_type": "Bearer",
        "iss": OTHER_ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "exp": now + 600,
        "iat": now,
        "scope": "reports:read orders:write",
        "client_id": "web",
        "username": "carol",
        "jti": "j-1",
    }
    document.update(overrides)
    return {name: value for name, value in document.items() if value is not None}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "overrides",
    [
        {"active": False},
        {"active": "true"},
        {"active": None},
        {"token_type": "refresh_token"},
        {"token_type": None},
        {"iss": "https://evil.example"},
        {"iss": None},
        {"aud": "another-service"},
        {"aud": ["another-service", "a-third"]},
        {"aud": None},
        {"sub": None},
        {"sub": 42},
        {"exp": None},
        {"exp": "2000000000"},
    ],
    ids=lambda overrides: "-".join(f"{k}={v}" for k, v in overrides.items()),
)
async def test_answer_not_about_a_usable_access_token_is_invalid_token(
    canned: CannedIssuer, overrides: dict[str, Any]
) -> None:
    canned.set_json(INTROSPECT_PATH, answer(**overrides))
    validator = introspector(canned)
    with pytest.raises(InvalidTokenError) as caught:
        await validator.validate(shaped())

    assert caught.value.status_code == 401
    assert caught.value.error == "invalid_token"
    assert validator.calls == 1  # refused on the issuer's word, not before asking


def test_real_http_wrong_iss_wrong_aud_and_inactive_answers_are_401(
    document_server: DocumentServer,
) -> None:
    with TestClient(build_app(unreachable_issuer(), introspector(document_server))) as service:
        for bad in [
            answer(iss="https://evil.example"),
            answer(aud="another-service"),
            {"active": False},
        ]:
            document_server.set_json(INTROSPECT_PATH, bad)
            assert_invalid_token(service.get("/live/me", headers=bearer(shaped())))

    assert document_server.hits[INTROSPECT_PATH] == 3


@pytest.mark.anyio
async def test_principal_from_an_answer(canned: CannedIssuer) -> None:
    canned.set_json(INTROSPECT_PATH, answer(aud=["other", AUDIENCE], token_type="bearer"))

    principal = await introspector(canned).validate(shaped())

    assert principal.sub == "user-1"
    assert principal.username == "carol"
    assert principal.scopes == frozenset({"reports:read", "orders:write"})
    assert principal.client_id == "web"
    assert principal.jti == "j-1"
    assert principal.claims["aud"] == ["other", AUDIENCE]


# --- the cache ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_same_token_within_ttl_is_asked_once(canned: CannedIssuer) -> None:
    canned.set_json(INTROSPECT_PATH, answer())
    clock = FakeClock()
    validator = introspector(canned, clock=clock)

    token = shaped()
    first = await validator.validate(token)
    clock.advance(4.9)
    second = await validator.validate(token)
    assert validator.calls == 1
    clock.advance(0.2)
    await validator.validate(token)

    assert second == first
    assert validator.calls == 2  # the default TTL of 5 s passed
    assert canned.hits[INTROSPECT_PATH] == 2


@pytest.mark.anyio
async def test_different_tokens_are_asked_separately(canned: CannedIssuer) -> None:
    canned.set_json(INTROSPECT_PATH, answer())
    validator = introspector(canned)

    one, two = shaped(), shaped()
    for token in (one, two, one, two):
        await validator.validate(token)

    assert validator.calls == 2
    assert canned.hits[INTROSPECT_PATH] == 2


@pytest.mark.anyio
async def test_inactive_answers_are_cached_too(canned: CannedIssuer) -> None:
    canned.set_json(INTROSPECT_PATH, {"active": False})
    validator = introspector(canned)

    token = shaped()
    for _ in range(3):
        with pytest.raises(InvalidTokenError):
            await validator.validate(token)

    assert validator.calls == 1


@pytest.mark.anyio
async def test_zero_ttl_asks_every_time(canned: CannedIssuer) -> None:
    canned.set_json(INTROSPECT_PATH, answer())
    validator = introspector(canned, cache_ttl=0)

    token = shaped()
    for _ in range(3):
        await validator.validate(token)

    assert validator.calls == 3


@pytest.mark.anyio
async def test_max_entries_evicts_the_oldest(canned: CannedIssuer) -> None:
    canned.set_json(INTROSPECT_PATH, answer())
    validator = introspector(canned, max_entries=2)
    one, two, three = shaped(), shaped(), shaped()

    for token in (one, two, three):
        await validator.validate(token)
    assert validator.calls == 3

    await validator.validate(three)
    assert validator.calls == 3  # still cached

    await validator.validate(one)
    assert validator.calls == 4  # evicted when "three" came in


@pytest.mark.anyio
async def test_eviction_is_least_recently_used(canned: CannedIssuer) -> None:
    canned.set_json(INTROSPECT_PATH, answer())
    validator = introspector(canned, max_entries=2)
    one, two, three = shaped(), shaped(), shaped()

    for token in (one, two, one, three):  # "one" was used again: "two" is the oldest
        await validator.validate(token)
    assert validator.calls == 3

    await validator.validate(one)
    assert validator.calls == 3
    await validator.validate(two)
    assert validator.calls == 4


@pytest.mark.anyio
async def test_answer_is_never_cached_past_the_tokens_exp(canned: CannedIssuer) -> None:
    canned.set_json(INTROSPECT_PATH, answer(exp=int(time.time()) + 2))
    clock = FakeClock()
    validator = introspector(canned, cache_ttl=60, clock=clock)
    token = shaped()

    await validator.validate(token)
    clock.advance(0.5)
    await validator.validate(token)
    assert validator.calls == 1

    clock.advance(1.7)  # past exp, long before the 60 s TTL
    await validator.validate(token)
    assert validator.calls == 2


@pytest.mark.anyio
async def test_answer_for_a_token_expiring_in_a_second_is_asked_again_after_it(
    canned: CannedIssuer,
) -> None:
    """The same bound on the real clock: exp = now + 1, TTL 60 s, 1.2 s later a new call (the
    token itself, past its exp by less than the leeway, is still worth asking about)."""
    exp = int(time.time()) + 1
    canned.set_json(INTROSPECT_PATH, answer(exp=exp))
    validator = introspector(canned, cache_ttl=60)
    token = shaped(exp=exp)

    await validator.validate(token)
    await anyio.sleep(1.2)
    await validator.validate(token)

    assert validator.calls == 2


def test_invalid_cache_settings_are_refused() -> None:
    for kwargs in ({"cache_ttl": -1.0}, {"max_entries": 0}):
        with pytest.raises(ValueError, match="cache_ttl"):
            IntrospectionValidator(OTHER_ISSUER, AUDIENCE, "id", "secret", **kwargs)


# --- not one of the issuer's access tokens: refused without a call ---------------------------


def _ago(seconds: int) -> dict[str, Any]:
    now = int(time.time())
    return {"exp": now - seconds, "iat": now - 600 - seconds, "nbf": now - 600 - seconds}


def _payload(value: Any) -> str:
    header = encode_segment({"alg": "RS256", "kid": "gateway-key", "typ": "at+jwt"})
    return f"{header}.{encode_segment(value)}.{b64url(b'sig')}"


NOT_OURS: dict[str, Callable[[], str]] = {
    "another-issuer": lambda: shaped("https://evil.example"),
    "issuer-with-a-trailing-slash": lambda: shaped(OTHER_ISSUER + "/"),
    "another-audience": lambda: shaped(aud="another-service"),
    "audience-list-without-ours": lambda: shaped(aud=["another-service", "a-third"]),
    "expired-past-the-leeway": lambda: shaped(**_ago(60)),
    "no-exp": lambda: shaped(drop=("exp",)),
    "no-iss": lambda: shaped(drop=("iss",)),
    "no-aud": lambda: shaped(drop=("aud",)),
    "no-sub": lambda: shaped(drop=("sub",)),
    "no-jti": lambda: shaped(drop=("jti",)),
    "no-iat": lambda: shaped(drop=("iat",)),
    "exp-a-string": lambda: shaped(exp=str(int(time.time()) + 600)),
    "exp-true": lambda: shaped(exp=True),
    "aud-a-number": lambda: shaped(aud=7),
    "sub-empty": lambda: shaped(sub=""),
    "scope-a-list": lambda: shaped(scope=["reports:read"]),
    "alg-none": lambda: shaped(header={"alg": "none"}),
    "alg-ps256": lambda: shaped(header={"alg": "PS256"}),
    "typ-jwt": lambda: shaped(header={"typ": "JWT"}),
    "no-typ": lambda: shaped(header={"typ": None}),
    "no-kid": lambda: shaped(header={"kid": None}),
    "jku-header": lambda: shaped(header={"jku": "https://evil.example/jwks.json"}),
    "two-segments": lambda: shaped().rsplit(".", 1)[0],
    "four-segments": lambda: shaped() + "." + b64url(b"x"),
    "empty-signature": lambda: shaped().rsplit(".", 1)[0] + ".",
    "padded-segment": lambda: shaped() + "==",
    "payload-a-list": lambda: _payload([{"iss": OTHER_ISSUER}]),
    "payload-not-json": lambda: _payload(b"{not json"),
    "over-8-KiB": lambda: shaped(padding="p" * 9000),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(NOT_OURS))
async def test_token_not_shaped_for_this_issuer_and_audience_is_refused_without_a_call(
    canned: CannedIssuer, case: str
) -> None:
    canned.set_json(INTROSPECT_PATH, answer())  # were it asked, the issuer would say yes
    validator = introspector(canned)

    with pytest.raises(InvalidTokenError) as caught:
        await validator.validate(NOT_OURS[case]())

    assert (caught.value.status_code, caught.value.error) == (401, "invalid_token")
    assert validator.calls == 0
    assert canned.hits.total() == 0


STILL_ASKED: dict[str, Callable[[], str]] = {
    "audience-list-with-ours": lambda: shaped(aud=["another-service", AUDIENCE]),
    "expired-within-the-leeway": lambda: shaped(**_ago(10)),
    "no-nbf": lambda: shaped(drop=("nbf",)),
    "es256": lambda: shaped(header={"alg": "ES256"}),
    # An HS256 gateway's tokens cannot be checked downstream: introspection is the way.
    "hs256": lambda: shaped(header={"alg": "HS256"}),
    "typ-media-type": lambda: shaped(header={"typ": "application/at+jwt"}),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(STILL_ASKED))
async def test_token_of_the_right_shape_is_asked_about(canned: CannedIssuer, case: str) -> None:
    canned.set_json(INTROSPECT_PATH, answer())
    validator = introspector(canned)

    assert (await validator.validate(STILL_ASKED[case]())).sub == "user-1"
    assert validator.calls == 1


def _random_strings() -> list[str]:
    """200 strings no issuer made: opaque ones, three random base64url segments, random hex
    segments, and a well-formed header over a random payload."""
    header = encode_segment({"alg": "RS256", "kid": "gateway-key", "typ": "at+jwt"})
    strings: list[str] = []
    for i in range(50):
        strings.append(secrets.token_urlsafe(8 + i))
        strings.append(".".join(secrets.token_urlsafe(4 + i) for _ in range(3)))
        strings.append(".".join(secrets.token_hex(2 + i) for _ in range(3)))
        strings.append(f"{header}.{secrets.token_urlsafe(16 + i)}.{secrets.token_urlsafe(32)}")
    return strings


@pytest.mark.anyio
async def test_random_strings_make_no_call_and_evict_no_answer(canned: CannedIssuer) -> None:
    canned.set_json(INTROSPECT_PATH, answer())
    validator = introspector(canned, max_entries=1)
    good = shaped()
    await validator.validate(good)
    strings = _random_strings()
    assert len(set(strings)) == 200

    for string in strings:
        with pytest.raises(InvalidTokenError):
            await validator.validate(string)

    assert validator.calls == 1
    assert canned.hits[INTROSPECT_PATH] == 1
    # The cache holds one entry, and it is still the good token's answer: no call for it.
    assert (await validator.validate(good)).sub == "user-1"
    assert validator.calls == 1


def test_live_route_refuses_what_is_not_an_access_token_of_ours_without_a_call(
    canned: CannedIssuer,
) -> None:
    canned.set_json(INTROSPECT_PATH, answer())
    with TestClient(build_app(unreachable_issuer(), introspector(canned))) as service:
        for token in ("garbage", "a.b.c", shaped("https://evil.example"), shaped(**_ago(3600))):
            assert_invalid_token(service.get("/live/me", headers=bearer(token)))
        assert service.get("/live/me", headers=bearer(shaped())).status_code == 200

    assert canned.hits[INTROSPECT_PATH] == 1


# --- one call per token, however many requests carry it at once ----------------------------


class SlowEndpoint:
    """An introspection endpoint behind an ``httpx.MockTransport`` answering after ``delay``."""

    def __init__(self, status: int = 200, delay: float = 0.2) -> None:
        self.status = status
        self.delay = delay
        self.calls = 0
        self.http = httpx.AsyncClient(transport=httpx.MockTransport(self._handle))

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return httpx.Response(self.status, json=answer())

    def validator(self, **kwargs: Any) -> IntrospectionValidator:
        return IntrospectionValidator(
            OTHER_ISSUER,
            AUDIENCE,
            "downstream",
            "secret",
            introspection_url=OTHER_ISSUER + INTROSPECT_PATH,
            http_client=self.http,
            **kwargs,
        )


@pytest.mark.anyio
@pytest.mark.parametrize("cache_ttl", [5.0, 0.0])
async def test_concurrent_validations_of_one_token_make_one_call(cache_ttl: float) -> None:
    endpoint = SlowEndpoint()
    token = shaped()
    async with endpoint.http, endpoint.validator(cache_ttl=cache_ttl) as validator:
        principals = await asyncio.gather(*(validator.validate(token) for _ in range(50)))
        assert endpoint.calls == validator.calls == 1
        assert all(principal == principals[0] for principal in principals)
        assert principals[0].sub == "user-1"

        await validator.validate(token)  # afterwards: the cache, or without one a new call
        assert endpoint.calls == (1 if cache_ttl else 2)


@pytest.mark.anyio
async def test_concurrent_validations_of_different_tokens_make_one_call_each() -> None:
    endpoint = SlowEndpoint()
    tokens = [shaped() for _ in range(5)]
    async with endpoint.http, endpoint.validator() as validator:
        await asyncio.gather(*(validator.validate(token) for token in tokens * 10))
    assert endpoint.calls == 5


@pytest.mark.anyio
async def test_a_failed_call_is_shared_by_its_waiters_and_not_remembered() -> None:
    endpoint = SlowEndpoint(status=500)
    token = shaped()
    async with endpoint.http, endpoint.validator() as validator:
        outcomes = await asyncio.gather(
            *(validator.validate(token) for _ in range(50)), return_exceptions=True
        )
        assert all(isinstance(outcome, TemporarilyUnavailableError) for outcome in outcomes)
        assert endpoint.calls == 1

        with pytest.raises(TemporarilyUnavailableError):
            await validator.validate(token)
        assert endpoint.calls == 2


@pytest.mark.anyio
async def test_a_cancelled_request_does_not_cancel_the_call_others_wait_for() -> None:
    endpoint = SlowEndpoint()
    token = shaped()
    async with endpoint.http, endpoint.validator() as validator:
        first = asyncio.ensure_future(validator.validate(token))
        await asyncio.sleep(0.05)  # the call is under way
        second = asyncio.ensure_future(validator.validate(token))
        await asyncio.sleep(0)
        first.cancel()

        assert (await second).sub == "user-1"
        assert first.cancelled()
        assert endpoint.calls == 1


# --- the request on the wire -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_id", "client_secret"),
    [
        ("downstream", "s3cret"),
        ("my:client", "pass:word"),
        ("a+b", "c+d/e=f"),
        ("with space", "100% é"),
    ],
)
def test_basic_credentials_form_encode_both_parts(client_id: str, client_secret: str) -> None:
    header = basic_credentials(client_id, client_secret)

    scheme, _, encoded = header.partition(" ")
    decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    assert scheme == "Basic"
    assert decoded == f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    assert decoded.count(":") == 1  # a ':' in the id can no longer split it wrongly
    assert parse_basic_credentials(header) == (client_id, client_secret)


@pytest.mark.anyio
async def test_request_is_a_form_post_with_basic_client_authentication() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answer())

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    validator = IntrospectionValidator(
        OTHER_ISSUER,
        AUDIENCE,
        "my:client",
        "se+cret",
        introspection_url="https://issuer.example/introspect",
        http_client=http,
    )
    token = shaped()
    await validator.validate(token)
    await validator.aclose()

    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == "https://issuer.example/introspect"
    assert request.headers["authorization"] == basic_credentials("my:client", "se+cret")
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {
        "token": [token],
        "token_type_hint": ["access_token"],
    }
    assert not http.is_closed  # the caller's client is the caller's to close
    await http.aclose()


def test_issuer_with_a_trailing_slash_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="must not end with '/'"):
        IntrospectionValidator(OTHER_ISSUER + "/", AUDIENCE, "rs", "secret")


class _EndlessAnswer(httpx.AsyncByteStream):
    """An answer that starts and never finishes: a byte every 50 ms."""

    async def __aiter__(self) -> Any:
        yield b'{"active": true'
        while True:
            await asyncio.sleep(0.05)
            yield b" "


@pytest.mark.anyio
async def test_an_answer_that_never_finishes_is_cut_at_the_deadline_and_is_503() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_EndlessAnswer())

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        validator = IntrospectionValidator(
            OTHER_ISSUER,
            AUDIENCE,
            "rs",
            "secret",
            introspection_url=OTHER_ISSUER + INTROSPECT_PATH,
            timeout=0.2,
            http_client=http,
        )
        started = time.monotonic()
        async with asyncio.timeout(5):
            with pytest.raises(TemporarilyUnavailableError):
                await validator.validate(shaped())
        assert time.monotonic() - started < 1.5
