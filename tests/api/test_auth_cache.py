"""What token checks keep (``auth_cache_ttl``) and how soon a taken-back token is refused.

Two apps on one database stand for two replicas: ``client`` (the conftest app) takes a token
back, ``other`` answers later requests. A write is checked against the database, so it is
refused at once everywhere; a read may be answered from what the other app kept, so it is
refused within the 1 s bound; the app that made the change refuses at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from authsvc.app import create_app
from authsvc.config import Settings
from tests.helpers import (
    ADMIN_PASSWORD,
    UNKNOWN_USER,
    access_token_for,
    assert_insufficient_scope,
    assert_invalid_token,
    bearer,
    eventually,
)

REVOKED = "The access token was revoked"


@dataclass(frozen=True)
class TakeBack:
    """A way to take alice's token back through an app's API, and what refusals then say."""

    act: Callable[[TestClient, dict[str, str], dict[str, Any], str], httpx2.Response]
    status: int
    description: str


def disable(app: TestClient, admin: dict[str, str], user: dict[str, Any], _: str) -> Any:
    return app.patch(f"/admin/users/{user['id']}", headers=admin, json={"is_active": False})


def revoke(app: TestClient, _: dict[str, str], __: dict[str, Any], token: str) -> Any:
    return app.post("/oauth2/revoke", data={"token": token, "client_id": "public"})


def revoke_all(app: TestClient, admin: dict[str, str], user: dict[str, Any], _: str) -> Any:
    return app.post(f"/admin/users/{user['id']}/revoke-sessions", headers=admin)


TAKE_BACKS = {
    "disabled": TakeBack(disable, 200, UNKNOWN_USER),
    "revoked": TakeBack(revoke, 200, REVOKED),
    "revoked-all": TakeBack(revoke_all, 204, REVOKED),
}


@pytest.fixture(params=sorted(TAKE_BACKS))
def take_back(request: pytest.FixtureRequest) -> TakeBack:
    taking_back: TakeBack = TAKE_BACKS[request.param]
    return taking_back


@pytest.fixture
def other(settings: Settings, migrated: None) -> Iterator[TestClient]:
    """A second app on the test's database, with the default ``auth_cache_ttl``."""
    with TestClient(create_app(settings)) as app:
        yield app


@pytest.fixture
def uncached(make_settings: Callable[..., Settings], migrated: None) -> Iterator[TestClient]:
    """A second app on the test's database that keeps nothing (``auth_cache_ttl=0``)."""
    with TestClient(create_app(make_settings(auth_cache_ttl=0))) as app:
        yield app


@pytest.fixture
def token(client: TestClient, user: dict[str, Any]) -> str:
    return access_token_for(client, user)


@pytest.fixture
def deputy(make_user: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """A second admin, whom the conftest ``admin`` can disable or demote."""
    return make_user("deputy", ADMIN_PASSWORD, scopes=("admin",))


@pytest.fixture
def deputy_headers(client: TestClient, deputy: dict[str, Any]) -> dict[str, str]:
    return bearer(access_token_for(client, deputy))


def me(app: TestClient, token: str) -> httpx2.Response:
    return app.get("/users/me", headers=bearer(token))


def take(
    take_back: TakeBack,
    client: TestClient,
    admin_headers: dict[str, str],
    user: dict[str, Any],
    token: str,
) -> None:
    response = take_back.act(client, admin_headers, user, token)
    assert response.status_code == take_back.status, response.text


def status_becomes(status: int, request: Callable[[], httpx2.Response]) -> bool:
    return eventually(lambda: request().status_code == status)


# --- a token taken back --------------------------------------------------------------------


def test_the_same_app_refuses_the_next_read_at_once(
    client: TestClient,
    admin_headers: dict[str, str],
    user: dict[str, Any],
    token: str,
    take_back: TakeBack,
) -> None:
    assert me(client, token).status_code == 200

    take(take_back, client, admin_headers, user, token)

    assert_invalid_token(me(client, token), take_back.description)


def test_the_other_app_refuses_a_write_at_once(
    client: TestClient,
    other: TestClient,
    admin_headers: dict[str, str],
    user: dict[str, Any],
    token: str,
    take_back: TakeBack,
) -> None:
    assert me(other, token).status_code == 200  # the other app now keeps alice's state

    take(take_back, client, admin_headers, user, token)

    response = other.patch("/users/me", headers=bearer(token), json={"full_name": "Alice"})
    assert_invalid_token(response, take_back.description)


def test_the_other_app_refuses_a_read_within_a_second(
    client: TestClient,
    other: TestClient,
    admin_headers: dict[str, str],
    user: dict[str, Any],
    token: str,
    take_back: TakeBack,
) -> None:
    assert me(other, token).status_code == 200

    take(take_back, client, admin_headers, user, token)

    assert status_becomes(401, lambda: me(other, token))
    assert_invalid_token(me(other, token), take_back.description)


def test_the_other_app_keeping_nothing_refuses_a_read_at_once(
    client: TestClient,
    uncached: TestClient,
    admin_headers: dict[str, str],
    user: dict[str, Any],
    token: str,
    take_back: TakeBack,
) -> None:
    assert me(uncached, token).status_code == 200

    take(take_back, client, admin_headers, user, token)

    assert_invalid_token(me(uncached, token), take_back.description)


@pytest.mark.parametrize(
    "headers",
    [{"X-Original-Method": "DELETE"}, {"X-Forwarded-Method": "post"}],
    ids=["nginx", "traefik"],
)
def test_the_other_app_refuses_forward_auth_for_a_proxied_write_at_once(
    client: TestClient,
    other: TestClient,
    admin_headers: dict[str, str],
    user: dict[str, Any],
    token: str,
    take_back: TakeBack,
    headers: dict[str, str],
) -> None:
    assert other.get("/auth/verify", headers=bearer(token)).status_code == 200

    take(take_back, client, admin_headers, user, token)

    response = other.get("/auth/verify", headers={**bearer(token), **headers})
    assert_invalid_token(response, take_back.description)


def test_the_other_app_refuses_forward_auth_asked_with_a_write_method_at_once(
    client: TestClient,
    other: TestClient,
    admin_headers: dict[str, str],
    user: dict[str, Any],
    token: str,
    take_back: TakeBack,
) -> None:
    # Envoy's ext_authz repeats the original request's method.
    assert other.get("/auth/verify/orders/1", headers=bearer(token)).status_code == 200

    take(take_back, client, admin_headers, user, token)

    response = other.request("PUT", "/auth/verify/orders/1", headers=bearer(token))
    assert_invalid_token(response, take_back.description)


def test_the_other_app_refuses_a_disabled_admin_s_write_on_a_scope_guarded_router_at_once(
    client: TestClient,
    other: TestClient,
    admin_headers: dict[str, str],
    deputy: dict[str, Any],
    deputy_headers: dict[str, str],
) -> None:
    # POST /admin/scopes is guarded by the router's require_scopes alone (CurrentAccount).
    assert other.get("/admin/scopes", headers=deputy_headers).status_code == 200

    disabled = client.patch(
        f"/admin/users/{deputy['id']}", headers=admin_headers, json={"is_active": False}
    )
    assert disabled.status_code == 200, disabled.text

    response = other.post("/admin/scopes", headers=deputy_headers, json={"name": "reports"})
    assert_invalid_token(response, UNKNOWN_USER)


# --- a scope taken back --------------------------------------------------------------------


def demote(client: TestClient, admin_headers: dict[str, str], deputy: dict[str, Any]) -> None:
    response = client.patch(
        f"/admin/users/{deputy['id']}", headers=admin_headers, json={"scopes": []}
    )
    assert response.status_code == 200, response.text
    assert response.json()["scopes"] == []


def test_a_removed_scope_makes_the_same_app_s_scope_guarded_read_403_at_once(
    client: TestClient,
    admin_headers: dict[str, str],
    deputy: dict[str, Any],
    deputy_headers: dict[str, str],
) -> None:
    assert client.get("/admin/users", headers=deputy_headers).status_code == 200

    demote(client, admin_headers, deputy)

    assert_insufficient_scope(client.get("/admin/users", headers=deputy_headers), "admin")


def test_a_removed_scope_makes_the_other_app_s_scope_guarded_write_403_at_once(
    client: TestClient,
    other: TestClient,
    admin_headers: dict[str, str],
    deputy: dict[str, Any],
    deputy_headers: dict[str, str],
) -> None:
    assert other.get("/admin/scopes", headers=deputy_headers).status_code == 200

    demote(client, admin_headers, deputy)

    response = other.post("/admin/scopes", headers=deputy_headers, json={"name": "reports"})
    assert_insufficient_scope(response, "admin")


def test_a_removed_scope_makes_the_other_app_s_scope_guarded_read_403_within_a_second(
    client: TestClient,
    other: TestClient,
    admin_headers: dict[str, str],
    deputy: dict[str, Any],
    deputy_headers: dict[str, str],
) -> None:
    assert other.get("/admin/users", headers=deputy_headers).status_code == 200

    demote(client, admin_headers, deputy)

    assert status_becomes(403, lambda: other.get("/admin/users", headers=deputy_headers))
    assert_insufficient_scope(other.get("/admin/users", headers=deputy_headers), "admin")
