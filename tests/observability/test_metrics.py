"""GET /metrics: the Prometheus exposition, what it counts after real traffic, the labels it
never carries (raw paths, ids the caller typed, tokens), and who may read it."""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine
from sqlalchemy import text as text_clause
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import QueuePool

from authsvc.app import create_app
from authsvc.config import Settings
from authsvc.observability.metrics import Metrics
from tests.helpers import (
    TOKEN_URL,
    USER_PASSWORD,
    access_token_for,
    assert_insufficient_scope,
    assert_invalid_token,
    assert_not_authenticated,
    basic,
    bearer,
    client_credentials_token,
    create_client,
    password_login,
    refresh_grant,
    token_request,
)

METRICS_URL = "/metrics"
# Starlette's TestClient sends from ("testclient", 50000), which is no IP address at all.
LOCAL = ("127.0.0.1", 50000)
NOT_FOUND = {"detail": "Not Found"}
_SUFFIXES = ("_total", "_created", "_bucket", "_count", "_sum")


def _families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` whose labels are exactly ``labels``; 0 when the metric
    is declared but has no such sample yet (a labelled counter never incremented)."""
    families = _families(text)
    base = next((name[: -len(suffix)] for suffix in _SUFFIXES if name.endswith(suffix)), name)
    assert name in families or base in families, f"no metric {name} in the exposition"
    for family in families.values():
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


def _label_values(text: str) -> list[str]:
    return [
        value
        for family in text_string_to_metric_families(text)
        for found in family.samples
        for value in found.labels.values()
    ]


def scrape(client: TestClient, headers: dict[str, str] | None = None) -> str:
    response = client.get(METRICS_URL, headers=headers)
    assert response.status_code == 200, response.text
    return response.text


def _flush_audit(app: FastAPI) -> None:
    """Write the queued audit events now, so the writer holds no connection when scraped."""
    app.state.ctx.audit.flush()


@pytest.fixture
def local(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, client=LOCAL) as test_client:
        yield test_client


@pytest.fixture
def serve(migrated: None) -> Iterator[Callable[..., TestClient]]:
    """Starts an app with the given settings, seen from ``address``; stopped afterwards."""
    started: list[TestClient] = []

    def factory(settings: Settings, address: tuple[str, int] = LOCAL) -> TestClient:
        test_client = TestClient(create_app(settings), client=address)
        test_client.__enter__()
        started.append(test_client)
        return test_client

    yield factory
    for test_client in reversed(started):
        test_client.__exit__(None, None, None)


# --- what is counted ---------------------------------------------------------------------


def test_the_pool_gauge_ignores_checkouts_that_failed() -> None:
    """SQLAlchemy fires "checkin" with no "checkout" when a pooled connection fails its
    pre-ping and the reconnect fails too (the database went away)."""
    metrics = Metrics()
    database_up = True

    def connect() -> sqlite3.Connection:
        if not database_up:
            raise sqlite3.OperationalError("the database is down")
        return sqlite3.connect(":memory:", check_same_thread=False)

    engine = create_engine("sqlite://", creator=connect, poolclass=QueuePool, pool_pre_ping=True)
    metrics.watch_pool(engine)
    with engine.connect() as connection:
        pooled = connection.connection.dbapi_connection
    assert pooled is not None
    pooled.close()  # the pooled connection dies, and no new one can be made
    database_up = False
    for _ in range(3):
        with pytest.raises(OperationalError):
            engine.connect()

    assert metrics.registry.get_sample_value("authsvc_db_pool_connections_in_use") == 0
    engine.dispose()


def test_a_forwarded_scrape_through_a_proxy_we_do_not_trust_is_not_found(
    serve: Callable[..., TestClient], make_settings: Callable[..., Settings]
) -> None:
    """A proxy on this host that is not in AUTHSVC_TRUSTED_PROXIES makes everyone local."""
    client = serve(make_settings())

    for header in ({"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}):
        response = client.get("/metrics", headers=header)
        assert response.status_code == 404, header
    assert client.get("/metrics").status_code == 200


def test_a_scripted_flow_is_counted_exactly(
    app: FastAPI, local: TestClient, admin: dict[str, Any]
) -> None:
    admin_headers = bearer(access_token_for(local, admin))  # password grant, public client
    created = local.post(
        "/admin/users",
        headers=admin_headers,
        json={"username": "bob", "password": USER_PASSWORD},
    )
    assert created.status_code == 201, created.text
    bob_id = created.json()["id"]
    rs = create_client(local, admin_headers, "rs")

    first = password_login(local, "bob", USER_PASSWORD)
    second = password_login(local, "bob", USER_PASSWORD)
    assert token_request(local, "bob", "wrong-password-1").status_code == 400
    assert token_request(local, "nobody-here", USER_PASSWORD).status_code == 400
    refreshed = refresh_grant(local, first["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    reused = refresh_grant(local, first["refresh_token"])  # consumed: reuse detected
    assert reused.status_code == 400, reused.text

    wrong_secret = local.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials"},
        headers=basic(rs["client_id"], "not-the-secret"),
    )
    assert wrong_secret.status_code == 401, wrong_secret.text
    rs_token = client_credentials_token(local, rs)
    revoked = local.post(
        "/oauth2/revoke",
        data={"token": rs_token},
        headers=basic(rs["client_id"], rs["client_secret"]),
    )
    assert revoked.status_code == 200, revoked.text

    bob_headers = bearer(second["access_token"])
    assert local.get("/users/me", headers=bob_headers).status_code == 200
    assert local.get("/users/me").status_code == 401
    sessions = local.get("/users/me/sessions", headers=bob_headers)
    assert sessions.status_code == 200, sessions.text
    assert len(sessions.json()) == 1  # the first login's family ended with the reuse
    session_id = sessions.json()[0]["id"]
    ended = local.delete(f"/users/me/sessions/{session_id}", headers=bob_headers)
    assert ended.status_code == 204, ended.text
    all_ended = local.post(f"/admin/users/{bob_id}/revoke-sessions", headers=admin_headers)
    assert all_ended.status_code == 204, all_ended.text

    _flush_audit(app)
    text = scrape(local)

    issued = "authsvc_tokens_issued_total"
    assert sample(text, issued, grant_type="password", client_id="public") == 3
    assert sample(text, issued, grant_type="refresh_token", client_id="public") == 1
    assert sample(text, issued, grant_type="client_credentials", client_id=rs["client_id"]) == 1
    assert sample(text, issued, grant_type="password", client_id="(none)") == 0

    failures = "authsvc_login_failures_total"
    assert sample(text, failures, reason="wrong_password") == 1
    assert sample(text, failures, reason="unknown_user") == 1
    assert sample(text, failures, reason="disabled") == 0
    assert sample(text, failures, reason="locked") == 0
    assert sample(text, "authsvc_lockouts_total") == 0
    assert sample(text, "authsvc_refresh_reuse_detections_total") == 1
    assert sample(text, "authsvc_client_auth_failures_total") == 1

    revocations = "authsvc_revocations_total"
    assert sample(text, revocations, kind="access_token") == 1
    assert sample(text, revocations, kind="refresh_token") == 0
    assert sample(text, revocations, kind="session") == 1
    assert sample(text, revocations, kind="all_sessions") == 1

    requests = "authsvc_http_requests_total"
    token_route = {"route": TOKEN_URL, "method": "POST"}
    # 200: admin, bob twice, the refresh, the client; 400: wrong password, unknown user,
    # reuse; 401: the wrong client secret.
    assert sample(text, requests, status="200", **token_route) == 5
    assert sample(text, requests, status="400", **token_route) == 3
    assert sample(text, requests, status="401", **token_route) == 1
    me = {"route": "/users/me", "method": "GET"}
    assert sample(text, requests, status="200", **me) == 1
    assert sample(text, requests, status="401", **me) == 1
    assert sample(text, requests, route="/oauth2/revoke", method="POST", status="200") == 1
    assert sample(text, requests, route="/admin/users", method="POST", status="201") == 1
    assert (
        sample(
            text,
            requests,
            route="/users/me/sessions/{session_id}",
            method="DELETE",
            status="204",
        )
        == 1
    )
    assert (
        sample(
            text,
            requests,
            route="/admin/users/{user_id}/revoke-sessions",
            method="POST",
            status="204",
        )
        == 1
    )
    # The scrape itself is counted once it has been answered, not in its own answer.
    assert sample(text, requests, route=METRICS_URL, method="GET", status="200") == 0

    latency = "authsvc_http_request_duration_seconds"
    assert sample(text, f"{latency}_count", **token_route) == 9
    assert sample(text, f"{latency}_count", **me) == 2
    assert sample(text, f"{latency}_sum", **token_route) > 0
    assert sample(text, f"{latency}_bucket", le="+Inf", **token_route) == 9

    hashing = "authsvc_password_hash_duration_seconds"
    # Five password logins: admin, bob twice, the wrong password, the unknown user.
    assert sample(text, f"{hashing}_count", operation="verify") >= 5
    assert sample(text, f"{hashing}_count", operation="hash") >= 1  # bob's password

    assert sample(text, "authsvc_jwks_keys") == 1
    in_use = sample(text, "authsvc_db_pool_connections_in_use")
    assert in_use == int(in_use)
    assert in_use == 0  # every request has given its connection back

    after = scrape(local)
    assert sample(after, requests, route=METRICS_URL, method="GET", status="200") == 1


def test_the_pool_gauge_counts_connections_checked_out_until_they_are_back(
    app: FastAPI, local: TestClient
) -> None:
    _flush_audit(app)
    assert sample(scrape(local), "authsvc_db_pool_connections_in_use") == 0
    with app.state.ctx.sessionmaker() as session:
        session.execute(text_clause("SELECT 1"))
        assert sample(scrape(local), "authsvc_db_pool_connections_in_use") == 1
    assert sample(scrape(local), "authsvc_db_pool_connections_in_use") == 0


def test_a_lockout_is_counted_and_a_further_login_counts_as_locked(
    make_settings: Callable[..., Settings],
    serve: Callable[..., TestClient],
    make_user: Callable[..., dict[str, Any]],
) -> None:
    local = serve(make_settings(lockout_threshold=2))
    user = make_user("carol", USER_PASSWORD)
    for _ in range(2):
        assert token_request(local, user["username"], "wrong-password-1").status_code == 400
    assert token_request(local, user["username"], USER_PASSWORD).status_code == 400

    text = scrape(local)
    assert sample(text, "authsvc_lockouts_total") == 1
    assert sample(text, "authsvc_login_failures_total", reason="wrong_password") == 2
    assert sample(text, "authsvc_login_failures_total", reason="locked") == 1
    assert (
        sample(text, "authsvc_tokens_issued_total", grant_type="password", client_id="public") == 0
    )


# --- what the labels never carry -----------------------------------------------------------


def test_requests_are_labelled_with_the_route_template_not_the_raw_path(
    local: TestClient, admin: dict[str, Any], user: dict[str, Any]
) -> None:
    admin_token = access_token_for(local, admin)
    user_tokens = password_login(local, user["username"], user["password"])
    response = local.get(f"/admin/users/{user['id']}", headers=bearer(admin_token))
    assert response.status_code == 200, response.text
    assert local.get("/users/me", headers=bearer(user_tokens["access_token"])).status_code == 200

    text = scrape(local)
    requests = "authsvc_http_requests_total"
    assert sample(text, requests, route="/admin/users/{user_id}", method="GET", status="200") == 1
    secrets = [
        user["id"],
        user["id"].replace("-", ""),
        user["username"],
        admin["username"],
        admin_token,
        user_tokens["access_token"],
        user_tokens["refresh_token"],
    ]
    for value in _label_values(text):
        for secret in secrets:
            assert secret not in value, f"{secret!r} in label value {value!r}"
    for secret in secrets:
        assert secret not in text


def test_a_path_no_route_matches_counts_as_unmatched_without_its_text(local: TestClient) -> None:
    marker = uuid.uuid4().hex
    response = local.get(f"/no/such/path/{marker}")
    assert response.status_code == 404

    text = scrape(local)
    requests = "authsvc_http_requests_total"
    assert sample(text, requests, route="(unmatched)", method="GET", status="404") == 1
    assert (
        sample(
            text, "authsvc_http_request_duration_seconds_count", route="(unmatched)", method="GET"
        )
        == 1
    )
    assert marker not in text
    assert "/no/such/path" not in text


def test_methods_outside_http_s_own_count_as_one_label_value(local: TestClient) -> None:
    for _ in range(3):
        made_up = f"X{uuid.uuid4().hex[:12].upper()}"
        local.request(made_up, "/healthz")

    text = scrape(local)
    requests = "authsvc_http_requests_total"
    assert sample(text, requests, route="/healthz", method="(other)", status="405") == 3
    assert not re.search(r'method="X[0-9A-F]{12}"', text)


def test_an_unregistered_client_id_counts_as_none_never_as_its_text(
    app: FastAPI, local: TestClient, user: dict[str, Any]
) -> None:
    typed = f"typed-{uuid.uuid4().hex}"
    tokens = password_login(local, user["username"], user["password"], client_id=typed)
    refreshed = refresh_grant(local, tokens["refresh_token"], client_id=typed)
    assert refreshed.status_code == 200, refreshed.text

    _flush_audit(app)
    text = scrape(local)
    issued = "authsvc_tokens_issued_total"
    assert sample(text, issued, grant_type="password", client_id="(none)") == 1
    assert sample(text, issued, grant_type="refresh_token", client_id="(none)") == 1
    assert sample(text, issued, grant_type="password", client_id="public") == 0
    assert sample(text, issued, grant_type="password", client_id=typed) == 0
    assert typed not in text


# --- who may read it -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "address", "headers", "expected"),
    [
        ({}, ("testclient", 50000), {}, 404),
        ({}, LOCAL, {}, 200),
        ({}, ("::1", 50000), {}, 200),
        ({}, ("192.0.2.7", 50000), {}, 404),
        ({"metrics_networks": ""}, LOCAL, {}, 404),
        ({"metrics_networks": "10.0.0.0/8"}, LOCAL, {}, 404),
        ({"metrics_networks": "10.0.0.0/8"}, ("10.1.2.3", 5), {}, 200),
        ({}, ("192.0.2.7", 50000), {"X-Forwarded-For": "127.0.0.1"}, 404),
        (
            {"trusted_proxies": "10.0.0.1"},
            ("10.0.0.1", 5),
            {"X-Forwarded-For": "127.0.0.1"},
            200,
        ),
        (
            {"trusted_proxies": "10.0.0.1"},
            ("10.0.0.1", 5),
            {"X-Forwarded-For": "192.0.2.7"},
            404,
        ),
    ],
    ids=[
        "not-an-ip",
        "loopback-v4",
        "loopback-v6",
        "remote",
        "empty-networks-even-loopback",
        "loopback-outside-networks",
        "inside-networks",
        "forwarded-for-from-untrusted-peer",
        "forwarded-for-from-trusted-proxy",
        "trusted-proxy-forwarding-a-remote-client",
    ],
)
def test_metrics_are_served_only_to_the_allowed_networks(
    make_settings: Callable[..., Settings],
    serve: Callable[..., TestClient],
    overrides: dict[str, str],
    address: tuple[str, int],
    headers: dict[str, str],
    expected: int,
) -> None:
    test_client = serve(make_settings(**overrides), address)
    response = test_client.get(METRICS_URL, headers=headers)
    assert response.status_code == expected, response.text
    if expected == 404:
        # The same answer as a path that does not exist: scanners learn nothing.
        assert response.json() == NOT_FOUND
        assert "www-authenticate" not in response.headers
    else:
        assert "authsvc_http_requests" in response.text


@pytest.fixture
def scoped(
    make_settings: Callable[..., Settings],
    serve: Callable[..., TestClient],
    admin: dict[str, Any],
) -> tuple[TestClient, dict[str, str]]:
    """An app that wants a token with scope ``metrics``, the scope created; and admin headers."""
    test_client = serve(make_settings(metrics_require_scope=True))
    admin_headers = bearer(access_token_for(test_client, admin))
    created = test_client.post("/admin/scopes", headers=admin_headers, json={"name": "metrics"})
    assert created.status_code == 201, created.text
    return test_client, admin_headers


def test_with_the_scope_required_no_token_gets_a_bare_challenge(
    scoped: tuple[TestClient, dict[str, str]],
) -> None:
    test_client, _ = scoped
    assert_not_authenticated(test_client.get(METRICS_URL))


def test_with_the_scope_required_a_garbage_token_is_an_invalid_token(
    scoped: tuple[TestClient, dict[str, str]],
) -> None:
    test_client, _ = scoped
    assert_invalid_token(test_client.get(METRICS_URL, headers=bearer("not.a.token")))


def test_with_the_scope_required_a_user_token_without_it_is_insufficient_scope(
    scoped: tuple[TestClient, dict[str, str]], user: dict[str, Any]
) -> None:
    test_client, _ = scoped
    headers = bearer(access_token_for(test_client, user))
    assert_insufficient_scope(test_client.get(METRICS_URL, headers=headers), "metrics")


def test_with_the_scope_required_the_admin_scope_alone_is_insufficient(
    scoped: tuple[TestClient, dict[str, str]],
) -> None:
    test_client, admin_headers = scoped
    assert_insufficient_scope(test_client.get(METRICS_URL, headers=admin_headers), "metrics")


def test_with_the_scope_required_a_client_token_holding_it_is_served(
    scoped: tuple[TestClient, dict[str, str]],
) -> None:
    test_client, admin_headers = scoped
    prometheus = create_client(test_client, admin_headers, "prometheus", scopes=["metrics"])
    token = client_credentials_token(test_client, prometheus)
    response = test_client.get(METRICS_URL, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert "www-authenticate" not in response.headers
    issued = sample(
        response.text,
        "authsvc_tokens_issued_total",
        grant_type="client_credentials",
        client_id=prometheus["client_id"],
    )
    assert issued == 1


def test_with_the_scope_required_a_user_holding_it_is_served(
    scoped: tuple[TestClient, dict[str, str]], make_user: Callable[..., dict[str, Any]]
) -> None:
    test_client, _ = scoped
    reader = make_user("metrics-reader", USER_PASSWORD, scopes=("metrics",))
    tokens = password_login(test_client, reader["username"], USER_PASSWORD)
    assert tokens["scope"] == "metrics"
    response = test_client.get(METRICS_URL, headers=bearer(tokens["access_token"]))
    assert response.status_code == 200, response.text
    assert "authsvc_http_requests" in response.text


def test_with_the_scope_required_a_good_token_from_outside_the_networks_is_still_not_found(
    scoped: tuple[TestClient, dict[str, str]],
    make_settings: Callable[..., Settings],
    serve: Callable[..., TestClient],
) -> None:
    test_client, admin_headers = scoped
    prometheus = create_client(test_client, admin_headers, "prometheus", scopes=["metrics"])
    token = client_credentials_token(test_client, prometheus)
    remote = serve(make_settings(metrics_require_scope=True), ("192.0.2.7", 50000))
    response = remote.get(METRICS_URL, headers=bearer(token))
    assert response.status_code == 404, response.text
    assert response.json() == NOT_FOUND
    assert "www-authenticate" not in response.headers


# --- the answer itself -----------------------------------------------------------------------


def test_the_exposition_is_prometheus_text_and_never_cached(local: TestClient) -> None:
    response: httpx2.Response = local.get(METRICS_URL)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert response.headers["cache-control"] == "no-store"
    names = set(_families(response.text))
    assert {
        "authsvc_http_requests",
        "authsvc_http_request_duration_seconds",
        "authsvc_tokens_issued",
        "authsvc_login_failures",
        "authsvc_lockouts",
        "authsvc_refresh_reuse_detections",
        "authsvc_revocations",
        "authsvc_client_auth_failures",
        "authsvc_password_hash_duration_seconds",
        "authsvc_db_pool_connections_in_use",
        "authsvc_jwks_keys",
    } <= names
