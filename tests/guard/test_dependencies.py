"""``authsvc.guard``'s FastAPI dependencies, driven through a downstream app over real HTTP.

The downstream apps (``examples/downstream_service.py`` and small apps built here) validate
tokens with a ``TokenValidator`` that fetches the keys of the ``live_gateway`` fixture, a real
gateway under uvicorn on a loopback port. Tokens are issued by the ``client`` fixture's app,
which shares the gateway's database and keys, so both accept the same tokens.
"""

from __future__ import annotations

import importlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import anyio
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, FastAPI, Security, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from authsvc.guard import (
    CurrentPrincipal,
    IntrospectionValidator,
    LivePrincipal,
    Principal,
    TokenValidator,
    bearer_token,
    get_principal,
    install_guard,
    require_scopes,
    websocket_principal,
)
from authsvc.security.keys import SigningKey, generate_private_key
from tests.guard.conftest import DocumentServer
from tests.helpers import (
    AUDIENCE,
    EXPIRED_TOKEN,
    ISSUER,
    Forger,
    access_token_for,
    assert_insufficient_scope,
    assert_invalid_token,
    assert_no_store,
    assert_not_authenticated,
    bearer,
    encode_segment,
    user_claims,
)
from tests.live_server import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCOPE_A = "layer:a"
SCOPE_B = "layer:b"
REPORTS = "reports:read"
ISSUER_UNAVAILABLE = {
    "error": "temporarily_unavailable",
    "error_description": "The token issuer's keys are unavailable",
}

Headers = list[tuple[str, str]]


# --- helpers and fixtures --------------------------------------------------------------------


def create_scope(client: TestClient, admin_headers: dict[str, str], name: str) -> None:
    response = client.post(
        "/admin/scopes", headers=admin_headers, json={"name": name, "description": name}
    )
    assert response.status_code == 201, response.text


def unreachable_issuer() -> str:
    """A loopback URL nothing listens on (the port was free a moment ago)."""
    return f"http://127.0.0.1:{free_port()}"


def expired_token(forger: Forger, issuer: str) -> str:
    now = int(time.time())
    return forger.token(
        payload=forger.claims(iss=issuer, iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    )


def ws_refusal(
    client: TestClient, url: str, headers: dict[str, str] | None = None
) -> WebSocketDisconnect:
    """The close of a socket the app accepted and then refused (``WebSocketDisconnect``).

    ``websocket_connect`` returning at all proves the socket was accepted: a close before the
    accept would raise there instead (and reach a browser as a bare HTTP 403)."""
    with client.websocket_connect(url, headers=dict(headers or {})) as websocket:
        with pytest.raises(WebSocketDisconnect) as caught:
            websocket.receive_json()
    return caught.value


@pytest.fixture
def downstream_service(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``examples/downstream_service.py``, which is a script directory, not a package."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module("downstream_service")


@pytest.fixture
def example(live_gateway: str, downstream_service: ModuleType) -> Iterator[TestClient]:
    """The example downstream app, trusting ``live_gateway``; the lifespan runs."""
    with TestClient(downstream_service.create_app(live_gateway, AUDIENCE)) as test_client:
        yield test_client


@pytest.fixture
def offline_example(downstream_service: ModuleType) -> Iterator[TestClient]:
    """The example app trusting an issuer that is down: for refusals that need no keys."""
    app = downstream_service.create_app(unreachable_issuer(), AUDIENCE)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def user_token(client: TestClient, user: dict[str, Any]) -> str:
    return access_token_for(client, user)


@pytest.fixture
def reports_token(
    client: TestClient, admin_headers: dict[str, str], make_user: Callable[..., dict[str, Any]]
) -> str:
    create_scope(client, admin_headers, REPORTS)
    return access_token_for(client, make_user("reporter", scopes=(REPORTS,)))


class CountingValidator(TokenValidator):
    """The real validator, counting how often a token is validated and when it is closed."""

    def __init__(self, *args: Any, events: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.validations = 0
        self.events = events if events is not None else []

    async def validate(self, token: str) -> Principal:
        self.validations += 1
        return await super().validate(token)

    async def aclose(self) -> None:
        self.events.append("validator closed")
        await super().aclose()


@dataclass
class Service:
    """A small app of our own, its test client and what its routes saw."""

    client: TestClient
    validator: CountingValidator
    seen: list[Principal] = field(default_factory=list)


def build_app(validator: TokenValidator, seen: list[Principal]) -> FastAPI:
    """Router and route scopes layered, ``Security`` as an annotation, a scoped WebSocket."""
    app = FastAPI()
    install_guard(app, validator)
    router = APIRouter(prefix="/layered", dependencies=[require_scopes(SCOPE_A)])

    @router.get("/both", dependencies=[require_scopes(SCOPE_B)])
    async def both(principal: CurrentPrincipal) -> dict[str, Any]:
        seen.append(principal)
        return {"sub": principal.sub, "scopes": sorted(principal.scopes)}

    app.include_router(router)

    @app.get("/annotated")
    async def annotated(
        principal: Annotated[Principal, Security(get_principal, scopes=[SCOPE_A])],
    ) -> dict[str, Any]:
        seen.append(principal)
        return {"sub": principal.sub}

    @app.get("/token")
    async def raw_token(token: Annotated[str, Security(bearer_token)]) -> dict[str, str]:
        return {"token": token}

    @app.websocket("/ws/reports")
    async def reports_socket(
        websocket: WebSocket,
        principal: Annotated[Principal, Security(websocket_principal, scopes=[REPORTS])],
    ) -> None:
        await websocket.accept()
        await websocket.send_json({"reports_for": principal.sub})
        await websocket.close()

    return app


@pytest.fixture
def service(live_gateway: str) -> Iterator[Service]:
    validator = CountingValidator(live_gateway, AUDIENCE)
    seen: list[Principal] = []
    with TestClient(build_app(validator, seen)) as test_client:
        yield Service(test_client, validator, seen)


@pytest.fixture
def layered_tokens(
    client: TestClient, admin_headers: dict[str, str], make_user: Callable[..., dict[str, Any]]
) -> dict[str, str]:
    """Tokens by the layer scopes their users hold: "a", "b", "ab" and "" (neither)."""
    create_scope(client, admin_headers, SCOPE_A)
    create_scope(client, admin_headers, SCOPE_B)
    holdings = {"a": (SCOPE_A,), "b": (SCOPE_B,), "ab": (SCOPE_A, SCOPE_B), "": ()}
    return {
        name: access_token_for(client, make_user(f"holder-{name or 'none'}", scopes=scopes))
        for name, scopes in holdings.items()
    }


# --- the example app's routes ----------------------------------------------------------------


def test_example_hello_needs_no_token(offline_example: TestClient) -> None:
    response = offline_example.get("/hello")

    assert response.status_code == 200
    assert response.json() == {"hello": "world"}


def test_example_me_describes_the_gateway_token(
    example: TestClient, user: dict[str, Any], user_token: str
) -> None:
    response = example.get("/me", headers=bearer(user_token))

    assert response.status_code == 200, response.text
    assert response.json() == {
        "sub": user["id"],
        "username": "alice",
        "scopes": [],
        "client_id": "public",
    }


def test_example_me_without_token_is_a_bare_challenge(offline_example: TestClient) -> None:
    assert_not_authenticated(offline_example.get("/me"))


def test_example_me_with_garbage_token_is_invalid_token(example: TestClient) -> None:
    assert_invalid_token(example.get("/me", headers=bearer("garbage")))


def test_example_me_with_expired_token_says_it_expired(
    example: TestClient, forger: Forger, live_gateway: str
) -> None:
    response = example.get("/me", headers=bearer(expired_token(forger, live_gateway)))

    assert_invalid_token(response, EXPIRED_TOKEN)


def test_example_reports_without_the_scope_is_insufficient_scope(
    example: TestClient, user_token: str
) -> None:
    response = example.get("/reports", headers=bearer(user_token))

    assert_insufficient_scope(response, scope=REPORTS)


def test_example_reports_with_the_scope_is_200(example: TestClient, reports_token: str) -> None:
    response = example.get("/reports", headers=bearer(reports_token))

    assert response.status_code == 200, response.text
    assert response.json()["reports"] == []


# --- the downstream refuses exactly as the gateway does ---------------------------------------


def _tampered(forger: Forger, issuer: str) -> str:
    """A signed token whose payload was swapped afterwards: the signature no longer fits."""
    header, _, signature = forger.token(payload=forger.claims(iss=issuer)).split(".")
    other = encode_segment(forger.claims(iss=issuer, sub="someone-else"))
    return f"{header}.{other}.{signature}"


def _header(token: str) -> Headers:
    return [("Authorization", f"Bearer {token}")]


# case: (headers from forger and issuer, expected status, whether the issuer's keys are needed)
PARITY_CASES: dict[str, tuple[Callable[[Forger, str], Headers], int, bool]] = {
    "missing": (lambda forger, issuer: [], 401, False),
    "basic-scheme": (lambda forger, issuer: [("Authorization", "Basic dXNlcjpwYXNz")], 401, False),
    "not-a-b64token": (lambda forger, issuer: _header("a@b"), 401, False),
    "two-authorization-headers": (
        lambda forger, issuer: [("Authorization", "Bearer a"), ("Authorization", "Bearer b")],
        400,
        False,
    ),
    "garbage": (lambda forger, issuer: _header("garbage"), 401, True),
    "expired": (lambda forger, issuer: _header(expired_token(forger, issuer)), 401, True),
    "other-audience": (
        lambda forger, issuer: _header(forger.token(payload=forger.claims(iss=issuer, aud="x"))),
        401,
        True,
    ),
    "bad-signature": (lambda forger, issuer: _header(_tampered(forger, issuer)), 401, True),
}


@pytest.mark.parametrize("case", list(PARITY_CASES))
def test_downstream_refusals_are_byte_for_byte_the_gateways(
    case: str, client: TestClient, forger: Forger, request: pytest.FixtureRequest
) -> None:
    """Refusals decided before any key is needed come from a downstream whose issuer is down
    (so they cannot depend on it); the others from one trusting the running gateway."""
    make_headers, status, needs_issuer = PARITY_CASES[case]
    if needs_issuer:
        issuer: str = request.getfixturevalue("live_gateway")
        downstream: TestClient = request.getfixturevalue("example")
    else:
        issuer = unreachable_issuer()
        downstream = request.getfixturevalue("offline_example")
    headers = make_headers(forger, issuer)

    from_gateway = client.get("/users/me", headers=headers)
    from_downstream = downstream.get("/me", headers=headers)

    assert from_gateway.status_code == status, from_gateway.text
    assert from_downstream.status_code == from_gateway.status_code
    assert from_downstream.content == from_gateway.content
    for name in ("www-authenticate", "content-type", "cache-control", "pragma"):
        assert from_downstream.headers.get(name) == from_gateway.headers.get(name), name
    assert_no_store(from_downstream)


def test_two_authorization_headers_are_invalid_request(offline_example: TestClient) -> None:
    response = offline_example.get(
        "/me", headers=[("Authorization", "Bearer a"), ("Authorization", "Bearer b")]
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "More than one Authorization header",
    }
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_request"')


# --- layering: router and route scopes --------------------------------------------------------


def test_router_and_route_scopes_together_let_the_request_through(
    service: Service, layered_tokens: dict[str, str]
) -> None:
    response = service.client.get("/layered/both", headers=bearer(layered_tokens["ab"]))

    assert response.status_code == 200, response.text
    assert response.json()["scopes"] == [SCOPE_A, SCOPE_B]


@pytest.mark.parametrize(
    ("holding", "named"),
    [("a", SCOPE_B), ("b", SCOPE_A), ("", SCOPE_A)],
    ids=["only-router-scope", "only-route-scope", "neither"],
)
def test_each_layer_is_checked_and_the_failing_layer_is_named(
    service: Service, layered_tokens: dict[str, str], holding: str, named: str
) -> None:
    """check_scopes names the scopes of the layer that failed (router layer first)."""
    response = service.client.get("/layered/both", headers=bearer(layered_tokens[holding]))

    assert_insufficient_scope(response, scope=named)


def test_a_token_is_validated_once_per_request_however_many_layers(
    service: Service, layered_tokens: dict[str, str]
) -> None:
    headers = bearer(layered_tokens["ab"])

    assert service.client.get("/layered/both", headers=headers).status_code == 200
    assert service.validator.validations == 1  # router layer, route layer and parameter

    assert service.client.get("/layered/both", headers=headers).status_code == 200
    assert service.validator.validations == 2  # the per-request cache ends with the request


def test_security_annotation_with_scopes_returns_the_principal(
    service: Service, layered_tokens: dict[str, str]
) -> None:
    response = service.client.get("/annotated", headers=bearer(layered_tokens["a"]))

    assert response.status_code == 200, response.text
    [principal] = service.seen
    assert isinstance(principal, Principal)
    assert response.json() == {"sub": principal.sub}
    assert SCOPE_A in principal.scopes


def test_security_annotation_without_its_scope_is_insufficient_scope(
    service: Service, layered_tokens: dict[str, str]
) -> None:
    response = service.client.get("/annotated", headers=bearer(layered_tokens["b"]))

    assert_insufficient_scope(response, scope=SCOPE_A)
    assert service.seen == []


def test_bearer_token_dependency_hands_over_the_raw_token() -> None:
    validator = CountingValidator(unreachable_issuer(), AUDIENCE)
    with TestClient(build_app(validator, [])) as test_client:
        response = test_client.get("/token", headers=bearer("opaque-token"))

    assert response.json() == {"token": "opaque-token"}
    assert validator.validations == 0


# --- misconfiguration and an unreachable issuer -----------------------------------------------


def _unguarded_app() -> FastAPI:
    app = FastAPI()

    @app.get("/me")
    async def me(principal: CurrentPrincipal) -> dict[str, str]:
        return {"sub": principal.sub}

    return app


def test_dependency_without_install_guard_raises_a_clear_runtime_error() -> None:
    with (
        TestClient(_unguarded_app()) as test_client,
        pytest.raises(RuntimeError, match=r"install_guard\(app, validator\) first"),
    ):
        test_client.get("/me", headers=bearer("some-token"))


def test_dependency_without_install_guard_raises_runtime_error_even_without_token() -> None:
    with (
        TestClient(_unguarded_app()) as test_client,
        pytest.raises(RuntimeError, match="install_guard"),
    ):
        test_client.get("/me")


def test_unreachable_issuer_is_503_temporarily_unavailable_with_retry_after() -> None:
    app = build_app(CountingValidator(unreachable_issuer(), AUDIENCE), [])
    with TestClient(app) as test_client:
        response = test_client.get("/annotated", headers=bearer("a.b.c"))

    assert response.status_code == 503
    assert response.json() == ISSUER_UNAVAILABLE
    assert response.headers["retry-after"] == "5"
    assert "www-authenticate" not in response.headers
    assert_no_store(response)


def test_unreachable_issuer_still_answers_a_missing_token_with_a_bare_challenge() -> None:
    app = build_app(CountingValidator(unreachable_issuer(), AUDIENCE), [])
    with TestClient(app) as test_client:
        assert_not_authenticated(test_client.get("/annotated"))


def test_example_app_with_unreachable_issuer_is_503(offline_example: TestClient) -> None:
    response = offline_example.get("/me", headers=bearer("a.b.c"))

    assert response.status_code == 503
    assert response.json() == ISSUER_UNAVAILABLE
    assert response.headers["retry-after"] == "5"


# --- a kid the guard has not seen, while the issuer is down ----------------------------------


def _plain_app(validator: TokenValidator) -> FastAPI:
    app = FastAPI()
    install_guard(app, validator)

    @app.get("/me")
    async def me(principal: CurrentPrincipal) -> dict[str, str]:
        return {"sub": principal.sub}

    @app.websocket("/ws")
    async def socket(
        websocket: WebSocket, principal: Annotated[Principal, Security(websocket_principal)]
    ) -> None:
        await websocket.accept()
        await websocket.send_json({"sub": principal.sub})
        await websocket.close()

    return app


@dataclass
class KeysOffline:
    """The gateway key's JWKS on ``document_server`` (which the test can take down), a forger
    of the gateway's tokens, and a token under a kid that JWKS never held, as after a rotation
    the guard has not heard of."""

    documents: DocumentServer
    signing_key: SigningKey
    forger: Forger
    rotated: str

    def publish(self) -> str:
        jwk = self.signing_key.public_jwk()
        return self.documents.set_json("/jwks.json", {"keys": [jwk]})

    def go_down(self) -> None:
        self.documents.set_json("/jwks.json", {"error": "down"}, status=500)


@pytest.fixture
def keys_offline(document_server: DocumentServer, signing_key: SigningKey) -> KeysOffline:
    account = {"id": str(uuid.uuid4()), "username": "alice"}
    forger = Forger(signing_key, lambda: user_claims(account))
    other = generate_private_key("RS256")
    assert isinstance(other, rsa.RSAPrivateKey)
    rotated = forger.token(header=forger.header(kid="rotated-in"), private_key=other)
    return KeysOffline(document_server, signing_key, forger, rotated)


def test_unknown_kid_while_the_issuer_is_down_is_503_and_closes_a_websocket_1013(
    keys_offline: KeysOffline,
) -> None:
    validator = TokenValidator(
        ISSUER, AUDIENCE, jwks_url=keys_offline.publish(), refresh_interval=0
    )
    with TestClient(_plain_app(validator)) as service:
        assert service.get("/me", headers=bearer(keys_offline.forger.token())).status_code == 200
        keys_offline.go_down()

        response = service.get("/me", headers=bearer(keys_offline.rotated))
        assert response.status_code == 503
        assert response.json() == ISSUER_UNAVAILABLE
        assert response.headers["retry-after"] == "5"
        assert "www-authenticate" not in response.headers
        assert_no_store(response)
        closed = ws_refusal(service, "/ws", headers=bearer(keys_offline.rotated))
        assert (closed.code, closed.reason) == (1013, "temporarily_unavailable")
        # The key the guard holds goes on verifying.
        assert service.get("/me", headers=bearer(keys_offline.forger.token())).status_code == 200

        keys_offline.publish()  # back, and still without that kid: now it is refused
        assert_invalid_token(service.get("/me", headers=bearer(keys_offline.rotated)))
        closed = ws_refusal(service, "/ws", headers=bearer(keys_offline.rotated))
        assert (closed.code, closed.reason) == (1008, "invalid_token")


def test_unknown_kid_within_the_refresh_interval_is_401_without_asking(
    keys_offline: KeysOffline,
) -> None:
    """The keys were fetched moments ago and did not hold that kid: the interval forbids
    asking again, and the answer is the gateway's invalid_token, issuer up or down."""
    validator = TokenValidator(
        ISSUER, AUDIENCE, jwks_url=keys_offline.publish(), refresh_interval=30
    )
    with TestClient(_plain_app(validator)) as service:
        assert service.get("/me", headers=bearer(keys_offline.forger.token())).status_code == 200
        keys_offline.go_down()

        assert_invalid_token(service.get("/me", headers=bearer(keys_offline.rotated)))
    assert keys_offline.documents.hits["/jwks.json"] == 1


# --- lifespan -------------------------------------------------------------------------------


def test_lifespan_closes_both_validators_after_the_apps_own_shutdown() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("app startup")
        yield
        events.append("app shutdown")

    app = FastAPI(lifespan=lifespan)
    issuer = unreachable_issuer()
    validator = CountingValidator(issuer, AUDIENCE, events=events)
    live = IntrospectionValidator(issuer, AUDIENCE, "downstream", "secret")
    install_guard(app, validator, live=live)

    with TestClient(app):
        assert events == ["app startup"]
        assert not validator._client.http.is_closed
        assert not live._client.http.is_closed

    assert events == ["app startup", "app shutdown", "validator closed"]
    assert validator._client.http.is_closed
    assert live._client.http.is_closed


def test_lifespan_leaves_a_callers_http_client_open() -> None:
    http = httpx.AsyncClient()
    app = FastAPI()
    install_guard(app, TokenValidator(unreachable_issuer(), AUDIENCE, http_client=http))

    with TestClient(app):
        pass

    assert not http.is_closed
    anyio.run(http.aclose)


# --- WebSockets -----------------------------------------------------------------------------


def test_websocket_with_authorization_header_greets_and_echoes(
    example: TestClient, user: dict[str, Any], user_token: str
) -> None:
    with example.websocket_connect("/ws", headers=bearer(user_token)) as websocket:
        assert websocket.receive_json() == {"hello": "alice"}
        websocket.send_text("ping")
        assert websocket.receive_json() == {"from": user["id"], "echo": "ping"}


def test_websocket_with_access_token_query_parameter_is_accepted(
    example: TestClient, user_token: str
) -> None:
    with example.websocket_connect(f"/ws?access_token={user_token}") as websocket:
        assert websocket.receive_json() == {"hello": "alice"}


def test_websocket_without_token_is_closed_1008(offline_example: TestClient) -> None:
    closed = ws_refusal(offline_example, "/ws")

    assert closed.code == 1008
    assert closed.reason == "not_authenticated"


def test_websocket_with_garbage_query_token_is_closed_1008_invalid_token(
    example: TestClient,
) -> None:
    closed = ws_refusal(example, "/ws?access_token=garbage")

    assert (closed.code, closed.reason) == (1008, "invalid_token")


def test_websocket_with_expired_token_is_closed_1008_invalid_token(
    example: TestClient, forger: Forger, live_gateway: str
) -> None:
    closed = ws_refusal(example, "/ws", headers=bearer(expired_token(forger, live_gateway)))

    assert (closed.code, closed.reason) == (1008, "invalid_token")


def test_websocket_with_header_and_query_token_is_closed_1008(
    offline_example: TestClient,
) -> None:
    closed = ws_refusal(offline_example, "/ws?access_token=a.b.c", headers=bearer("a.b.c"))

    assert (closed.code, closed.reason) == (1008, "invalid_request")


def test_websocket_with_the_query_token_twice_is_closed_1008(
    offline_example: TestClient,
) -> None:
    closed = ws_refusal(offline_example, "/ws?access_token=a.b.c&access_token=a.b.c")

    assert (closed.code, closed.reason) == (1008, "invalid_request")


def test_websocket_without_the_declared_scope_is_closed_1008_insufficient_scope(
    service: Service, user_token: str
) -> None:
    closed = ws_refusal(service.client, "/ws/reports", headers=bearer(user_token))

    assert (closed.code, closed.reason) == (1008, "insufficient_scope")


def test_websocket_with_the_declared_scope_is_accepted(
    service: Service, reports_token: str
) -> None:
    with service.client.websocket_connect(
        "/ws/reports", headers=bearer(reports_token)
    ) as websocket:
        assert "reports_for" in websocket.receive_json()


def test_websocket_with_unreachable_issuer_is_closed_1013(offline_example: TestClient) -> None:
    closed = ws_refusal(offline_example, "/ws", headers=bearer("a.b.c"))

    assert (closed.code, closed.reason) == (1013, "temporarily_unavailable")


# --- live mode without a live validator --------------------------------------------------------


def _app_without_live() -> FastAPI:
    app = FastAPI()
    install_guard(app, TokenValidator(unreachable_issuer(), AUDIENCE))

    @app.get("/live/principal")
    async def live_principal(principal: LivePrincipal) -> dict[str, str]:
        return {"sub": principal.sub}

    @app.get("/live/scoped", dependencies=[require_scopes(REPORTS, live=True)])
    async def live_scoped() -> dict[str, str]:
        return {}

    return app


@pytest.mark.parametrize("path", ["/live/principal", "/live/scoped"])
def test_live_dependencies_without_a_live_validator_raise_runtime_error(path: str) -> None:
    with (
        TestClient(_app_without_live()) as test_client,
        pytest.raises(RuntimeError, match=r"live=True needs install_guard\(app, validator, live="),
    ):
        test_client.get(path, headers=bearer("some-token"))
