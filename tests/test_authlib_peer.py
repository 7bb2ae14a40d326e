"""Authlib as a peer: a third-party OAuth2 client and JOSE library against a real ``authsvc serve``.

Nothing of authsvc is imported: Authlib finds the endpoints in the discovery document, gets
tokens with the password, refresh_token and client_credentials grants (client_secret_basic and
client_secret_post), introspects and revokes them, and verifies access tokens with its own JWT
implementation against the published JWKS.

``authlib.jose`` warns on import that it is deprecated in favour of joserfc (the warning comes
once per process, on first import); the tests that import it filter exactly that warning.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx2
import pytest
from authlib.integrations.httpx_client import OAuth2Client, OAuthError

from tests.live_server import SERVER_DATABASES, Server, database_environment, server_factory

# Read at import: the conftest's autouse fixture removes AUTHSVC_* variables during tests.
TEST_DATABASE_URL = os.environ.get("AUTHSVC_TEST_DATABASE_URL")
ADMIN_USERNAME = "peer-admin"
ADMIN_PASSWORD = "peer-admin-password-1"
USER_PASSWORD = "peer-user-password-1"
AUDIENCE = "authsvc"  # the default setting: the server runs with no audience configured
PUBLIC_CLIENT_ID = "authlib-peer"
AUTHLIB_JOSE_DEPRECATION = pytest.mark.filterwarnings(
    "ignore:authlib.jose module is deprecated:authlib.deprecate.AuthlibDeprecationWarning"
)

DATABASES = SERVER_DATABASES


@dataclass(frozen=True)
class Peer:
    """A running server and what a client learns from its discovery document."""

    server: Server
    metadata: dict[str, Any]

    @property
    def token_endpoint(self) -> str:
        url: str = self.metadata["token_endpoint"]
        return url

    @property
    def introspection_endpoint(self) -> str:
        url: str = self.metadata["introspection_endpoint"]
        return url

    @property
    def revocation_endpoint(self) -> str:
        url: str = self.metadata["revocation_endpoint"]
        return url

    def url(self, path: str) -> str:
        return f"{self.server.base_url}{path}"


@pytest.fixture(scope="module", params=DATABASES)
def peer(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Peer]:
    workdir: Path = tmp_path_factory.mktemp("peer") / "srv"
    with (
        database_environment(request.param, "peer_") as database_env,
        server_factory(workdir, database_env) as factory,
    ):
        # The issuer is the URL the server answers on (live_server's default), so the
        # discovery document names endpoints a client can reach.
        server = factory.start(
            AUTHSVC_BOOTSTRAP_ADMIN_USERNAME=ADMIN_USERNAME,
            AUTHSVC_BOOTSTRAP_ADMIN_PASSWORD=ADMIN_PASSWORD,
        )
        issuer = server.base_url
        response = httpx2.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10)
        assert response.status_code == 200, response.text
        yield Peer(server, response.json())


def public_client(**kwargs: Any) -> OAuth2Client:
    """Authlib as a public client: no secret, client_id sent in the body."""
    return OAuth2Client(
        client_id=PUBLIC_CLIENT_ID, token_endpoint_auth_method="none", timeout=10, **kwargs
    )


@pytest.fixture
def admin_token(peer: Peer) -> str:
    with public_client() as oauth:
        token = oauth.fetch_token(
            peer.token_endpoint, username=ADMIN_USERNAME, password=ADMIN_PASSWORD
        )
    access_token: str = token["access_token"]
    return access_token


def admin_post(peer: Peer, admin_token: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx2.post(
        peer.url(path),
        json=body,
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.fixture
def alice(peer: Peer, admin_token: str) -> dict[str, Any]:
    """A fresh user per test (the server is shared by the module)."""
    username = f"alice-{uuid.uuid4().hex[:8]}"
    created = admin_post(
        peer, admin_token, "/admin/users", {"username": username, "password": USER_PASSWORD}
    )
    return {"id": created["id"], "username": username, "password": USER_PASSWORD}


@pytest.fixture
def make_confidential_client(peer: Peer, admin_token: str) -> Callable[[], dict[str, Any]]:
    def factory() -> dict[str, Any]:
        return admin_post(
            peer,
            admin_token,
            "/admin/clients",
            {"name": "authlib-service", "grant_types": ["client_credentials"]},
        )

    return factory


@pytest.fixture
def resource_server(
    make_confidential_client: Callable[[], dict[str, Any]],
) -> Iterator[OAuth2Client]:
    """Authlib as a resource server asking about tokens (client_secret_basic)."""
    registered = make_confidential_client()
    with OAuth2Client(
        client_id=registered["client_id"],
        client_secret=registered["client_secret"],
        token_endpoint_auth_method="client_secret_basic",
        timeout=10,
    ) as rs:
        yield rs


def login(peer: Peer, user: dict[str, Any]) -> dict[str, Any]:
    with public_client() as oauth:
        token: dict[str, Any] = oauth.fetch_token(
            peer.token_endpoint, username=user["username"], password=user["password"]
        )
    return token


def introspect(peer: Peer, rs: OAuth2Client, token: str, hint: str | None = None) -> dict[str, Any]:
    response = rs.introspect_token(peer.introspection_endpoint, token=token, token_type_hint=hint)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class RequestLog:
    """An httpx2 request hook that keeps what Authlib actually sent."""

    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> None:
        self.requests.append(request)

    def form(self, index: int = -1) -> dict[str, list[str]]:
        return parse_qs(self.requests[index].content.decode("ascii"))


def basic_credentials(request: httpx2.Request) -> str:
    scheme, _, value = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(value).decode("utf-8")


def verify_with_authlib(peer: Peer, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify ``token`` with authlib.jose against the published JWKS; returns header, claims."""
    from authlib.jose import JsonWebKey, JsonWebToken

    jwks = httpx2.get(peer.metadata["jwks_uri"], timeout=10)
    assert jwks.status_code == 200, jwks.text
    key_set = JsonWebKey.import_key_set(jwks.json())
    claims = JsonWebToken(["RS256"]).decode(
        token,
        key_set,
        claims_options={
            "iss": {"essential": True, "value": peer.metadata["issuer"]},
            "aud": {"essential": True, "value": AUDIENCE},
            "sub": {"essential": True},
            "exp": {"essential": True},
            "iat": {"essential": True},
            "nbf": {"essential": True},
            "jti": {"essential": True},
        },
    )
    claims.validate()
    return dict(claims.header), dict(claims)


# --- discovery -------------------------------------------------------------------------------


def test_discovery_document_names_every_endpoint_authlib_uses(peer: Peer) -> None:
    issuer = peer.server.base_url

    assert peer.metadata["issuer"] == issuer
    assert peer.token_endpoint == f"{issuer}/oauth2/token"
    assert peer.introspection_endpoint == f"{issuer}/oauth2/introspect"
    assert peer.revocation_endpoint == f"{issuer}/oauth2/revoke"
    assert peer.metadata["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert {"password", "refresh_token", "client_credentials"} <= set(
        peer.metadata["grant_types_supported"]
    )


# --- password grant and refresh --------------------------------------------------------------


def test_authlib_password_grant_gets_a_bearer_token_with_a_refresh_token(
    peer: Peer, alice: dict[str, Any]
) -> None:
    log = RequestLog()

    with public_client(event_hooks={"request": [log]}) as oauth:
        token = oauth.fetch_token(
            peer.token_endpoint, username=alice["username"], password=alice["password"]
        )

    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 900
    assert token["refresh_token"]
    assert not token.is_expired()
    assert log.form()["client_id"] == [PUBLIC_CLIENT_ID]
    assert "authorization" not in log.requests[-1].headers


def test_authlib_session_calls_a_protected_route_with_its_token(
    peer: Peer, alice: dict[str, Any]
) -> None:
    with public_client() as oauth:
        oauth.fetch_token(
            peer.token_endpoint, username=alice["username"], password=alice["password"]
        )
        response = oauth.get(peer.url("/users/me"))

    assert response.status_code == 200, response.text
    assert response.json()["username"] == alice["username"]


def test_authlib_sees_a_wrong_password_as_invalid_grant(peer: Peer, alice: dict[str, Any]) -> None:
    with public_client() as oauth, pytest.raises(OAuthError) as raised:
        oauth.fetch_token(peer.token_endpoint, username=alice["username"], password="wrong-1")

    assert raised.value.error == "invalid_grant"
    assert raised.value.description == "Invalid username or password"


def test_authlib_refresh_rotates_the_refresh_token(peer: Peer, alice: dict[str, Any]) -> None:
    with public_client() as oauth:
        first = dict(
            oauth.fetch_token(
                peer.token_endpoint, username=alice["username"], password=alice["password"]
            )
        )
        second = oauth.refresh_token(peer.token_endpoint, refresh_token=first["refresh_token"])

    assert second["token_type"] == "Bearer"
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]


def test_authlib_sees_a_replayed_refresh_token_as_invalid_grant(
    peer: Peer, alice: dict[str, Any]
) -> None:
    first = login(peer, alice)
    with public_client() as oauth:
        oauth.refresh_token(peer.token_endpoint, refresh_token=first["refresh_token"])

        with pytest.raises(OAuthError) as raised:
            oauth.refresh_token(peer.token_endpoint, refresh_token=first["refresh_token"])

    assert raised.value.error == "invalid_grant"


# --- client credentials ----------------------------------------------------------------------


def test_authlib_client_credentials_with_client_secret_basic(
    peer: Peer, make_confidential_client: Callable[[], dict[str, Any]]
) -> None:
    registered = make_confidential_client()
    log = RequestLog()

    with OAuth2Client(
        client_id=registered["client_id"],
        client_secret=registered["client_secret"],
        token_endpoint_auth_method="client_secret_basic",
        event_hooks={"request": [log]},
        timeout=10,
    ) as oauth:
        token = oauth.fetch_token(peer.token_endpoint, grant_type="client_credentials")

    assert token["token_type"] == "Bearer"
    assert "refresh_token" not in token
    assert basic_credentials(log.requests[-1]) == (
        f"{registered['client_id']}:{registered['client_secret']}"
    )
    assert "client_secret" not in log.form()


def test_authlib_client_credentials_with_client_secret_post(
    peer: Peer, make_confidential_client: Callable[[], dict[str, Any]]
) -> None:
    registered = make_confidential_client()
    log = RequestLog()

    with OAuth2Client(
        client_id=registered["client_id"],
        client_secret=registered["client_secret"],
        token_endpoint_auth_method="client_secret_post",
        event_hooks={"request": [log]},
        timeout=10,
    ) as oauth:
        token = oauth.fetch_token(peer.token_endpoint, grant_type="client_credentials")

    assert token["token_type"] == "Bearer"
    assert "refresh_token" not in token
    assert "authorization" not in log.requests[-1].headers
    assert log.form()["client_secret"] == [registered["client_secret"]]


def test_authlib_sees_a_wrong_client_secret_as_invalid_client(
    peer: Peer, make_confidential_client: Callable[[], dict[str, Any]]
) -> None:
    registered = make_confidential_client()

    with (
        OAuth2Client(
            client_id=registered["client_id"],
            client_secret="wrong-secret",
            token_endpoint_auth_method="client_secret_basic",
            timeout=10,
        ) as oauth,
        pytest.raises(OAuthError) as raised,
    ):
        oauth.fetch_token(peer.token_endpoint, grant_type="client_credentials")

    assert raised.value.error == "invalid_client"


# --- verifying access tokens with authlib.jose -----------------------------------------------


@AUTHLIB_JOSE_DEPRECATION
def test_password_grant_access_token_verifies_with_authlib_jose(
    peer: Peer, alice: dict[str, Any]
) -> None:
    token = login(peer, alice)["access_token"]

    header, claims = verify_with_authlib(peer, token)

    assert header["alg"] == "RS256"
    assert header["typ"] == "at+jwt"
    assert claims["sub"] == alice["id"]
    assert claims["client_id"] == PUBLIC_CLIENT_ID
    assert claims["preferred_username"] == alice["username"]


@AUTHLIB_JOSE_DEPRECATION
def test_client_credentials_access_token_verifies_with_authlib_jose(
    peer: Peer, make_confidential_client: Callable[[], dict[str, Any]]
) -> None:
    registered = make_confidential_client()
    with OAuth2Client(
        client_id=registered["client_id"],
        client_secret=registered["client_secret"],
        timeout=10,
    ) as oauth:
        token = oauth.fetch_token(peer.token_endpoint, grant_type="client_credentials")

    _, claims = verify_with_authlib(peer, token["access_token"])

    assert claims["sub"] == registered["client_id"]
    assert claims["client_id"] == registered["client_id"]


@AUTHLIB_JOSE_DEPRECATION
def test_authlib_jose_rejects_a_token_with_a_tampered_payload(
    peer: Peer, alice: dict[str, Any]
) -> None:
    from authlib.jose.errors import BadSignatureError

    header, payload, signature = login(peer, alice)["access_token"].split(".")
    claims = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    forged = claims.replace(b'"scope":""', b'"scope":"admin"').replace(
        b'"scope": ""', b'"scope": "admin"'
    )
    assert forged != claims
    tampered = base64.urlsafe_b64encode(forged).rstrip(b"=").decode("ascii")

    with pytest.raises(BadSignatureError):
        verify_with_authlib(peer, f"{header}.{tampered}.{signature}")


# --- introspection and revocation ------------------------------------------------------------


def test_authlib_introspects_an_active_access_token(
    peer: Peer, alice: dict[str, Any], resource_server: OAuth2Client
) -> None:
    token = login(peer, alice)["access_token"]

    body = introspect(peer, resource_server, token, hint="access_token")

    assert body["active"] is True
    assert body["token_type"] == "Bearer"
    assert body["username"] == alice["username"]
    assert body["client_id"] == PUBLIC_CLIENT_ID


def test_authlib_introspects_an_active_refresh_token(
    peer: Peer, alice: dict[str, Any], resource_server: OAuth2Client
) -> None:
    token = login(peer, alice)["refresh_token"]

    body = introspect(peer, resource_server, token, hint="refresh_token")

    assert body["active"] is True
    assert body["token_type"] == "refresh_token"
    assert body["sub"] == alice["id"]


def test_authlib_introspection_with_client_secret_post(
    peer: Peer, alice: dict[str, Any], make_confidential_client: Callable[[], dict[str, Any]]
) -> None:
    registered = make_confidential_client()
    token = login(peer, alice)["access_token"]
    log = RequestLog()

    with OAuth2Client(
        client_id=registered["client_id"],
        client_secret=registered["client_secret"],
        # Authlib authenticates introspection with the token endpoint's method.
        token_endpoint_auth_method="client_secret_post",
        event_hooks={"request": [log]},
        timeout=10,
    ) as rs:
        body = introspect(peer, rs, token)

    assert body["active"] is True
    assert "authorization" not in log.requests[-1].headers
    assert log.form()["client_secret"] == [registered["client_secret"]]


def test_public_client_revokes_its_access_token_with_authlib(
    peer: Peer, alice: dict[str, Any], resource_server: OAuth2Client
) -> None:
    token = login(peer, alice)["access_token"]
    log = RequestLog()

    with public_client(event_hooks={"request": [log]}) as oauth:
        response = oauth.revoke_token(
            peer.revocation_endpoint, token=token, token_type_hint="access_token"
        )

    assert response.status_code == 200, response.text
    assert log.form()["client_id"] == [PUBLIC_CLIENT_ID]
    assert introspect(peer, resource_server, token) == {"active": False}
    assert peer.server.get("/users/me", token).status_code == 401


def test_public_client_revokes_its_refresh_token_with_authlib(
    peer: Peer, alice: dict[str, Any], resource_server: OAuth2Client
) -> None:
    refresh_token = login(peer, alice)["refresh_token"]

    with public_client() as oauth:
        response = oauth.revoke_token(
            peer.revocation_endpoint, token=refresh_token, token_type_hint="refresh_token"
        )
        assert response.status_code == 200, response.text

        with pytest.raises(OAuthError) as raised:
            oauth.refresh_token(peer.token_endpoint, refresh_token=refresh_token)

    assert raised.value.error == "invalid_grant"
    assert introspect(peer, resource_server, refresh_token) == {"active": False}


def test_confidential_client_revokes_its_client_credentials_token_with_authlib(
    peer: Peer,
    make_confidential_client: Callable[[], dict[str, Any]],
    resource_server: OAuth2Client,
) -> None:
    registered = make_confidential_client()
    with OAuth2Client(
        client_id=registered["client_id"],
        client_secret=registered["client_secret"],
        timeout=10,
    ) as oauth:
        token = oauth.fetch_token(peer.token_endpoint, grant_type="client_credentials")
        response = oauth.revoke_token(peer.revocation_endpoint, token=token["access_token"])

    assert response.status_code == 200, response.text
    assert introspect(peer, resource_server, token["access_token"]) == {"active": False}
