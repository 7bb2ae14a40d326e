"""One log line per request (``api.request_log``), its request id, and what it leaves out."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from authsvc.observability.logs import JsonFormatter, TextFormatter
from tests.helpers import (
    USER_PASSWORD,
    access_token_for,
    basic,
    bearer,
    create_client,
    password_login,
)
from tests.live_server import server_factory

ACCESS = "authsvc.access"


@pytest.fixture
def access_lines(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=ACCESS)
    return caplog


def http_fields(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [record.http for record in caplog.records if record.name == ACCESS]  # type: ignore[attr-defined]


def test_a_request_id_sent_by_the_caller_is_echoed_and_logged(
    client: TestClient, access_lines: pytest.LogCaptureFixture
) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "edge-42.a:b"})
    assert response.headers["x-request-id"] == "edge-42.a:b"
    assert http_fields(access_lines)[-1]["request_id"] == "edge-42.a:b"


def test_a_request_without_an_id_gets_a_new_one_each_time(client: TestClient) -> None:
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


@pytest.mark.parametrize(
    "sent",
    ['x" injected="1', "a" * 129, "line\tbreak", ""],
    ids=["quote", "too-long", "tab", "empty"],
)
def test_an_unsafe_request_id_is_replaced_not_echoed(client: TestClient, sent: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": sent})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_every_response_carries_its_processing_time_in_seconds(client: TestClient) -> None:
    response = client.get("/healthz")
    assert 0 < float(response.headers["x-process-time"]) < 5


def test_the_line_names_the_route_template_not_the_raw_path(
    client: TestClient, admin_headers: dict[str, str], access_lines: pytest.LogCaptureFixture
) -> None:
    user_id = "00000000-0000-4000-8000-000000000000"
    client.get(f"/admin/users/{user_id}", headers=admin_headers)
    fields = http_fields(access_lines)[-1]
    assert fields["method"] == "GET"
    assert fields["route"] == "/admin/users/{user_id}"
    assert fields["status"] == 404
    assert fields["duration_ms"] >= 0


def test_an_unknown_path_is_logged_without_a_route(
    client: TestClient, access_lines: pytest.LogCaptureFixture
) -> None:
    client.get("/no/such/secret-looking/path")
    fields = http_fields(access_lines)[-1]
    assert fields["route"] is None
    assert fields["status"] == 404


def test_a_bearer_request_logs_the_tokens_subject_and_client(
    client: TestClient, user: dict[str, Any], access_lines: pytest.LogCaptureFixture
) -> None:
    token = access_token_for(client, user)
    client.get("/users/me", headers=bearer(token))
    fields = http_fields(access_lines)[-1]
    assert fields["sub"] == str(user["id"])
    assert fields["client_id"] == "public"


def test_a_password_grant_logs_the_user_it_issued_for(
    client: TestClient, user: dict[str, Any], access_lines: pytest.LogCaptureFixture
) -> None:
    password_login(client, user["username"], USER_PASSWORD)
    fields = http_fields(access_lines)[-1]
    assert fields["route"] == "/oauth2/token"
    assert fields["status"] == 200
    assert fields["sub"] == str(user["id"])


def test_introspection_logs_the_authenticated_client(
    client: TestClient, admin_headers: dict[str, str], access_lines: pytest.LogCaptureFixture
) -> None:
    registered = create_client(client, admin_headers)
    client.post(
        "/oauth2/introspect",
        data={"token": "nope"},
        headers=basic(registered["client_id"], registered["client_secret"]),
    )
    fields = http_fields(access_lines)[-1]
    assert fields["route"] == "/oauth2/introspect"
    assert fields["client_id"] == registered["client_id"]
    assert fields["sub"] is None


def test_a_refused_token_logs_no_subject(
    client: TestClient, access_lines: pytest.LogCaptureFixture
) -> None:
    client.get("/users/me", headers=bearer("not.a.token"))
    fields = http_fields(access_lines)[-1]
    assert fields["status"] == 401
    assert fields["sub"] is None


def test_a_revoked_token_logs_no_subject(
    client: TestClient, user: dict[str, Any], access_lines: pytest.LogCaptureFixture
) -> None:
    token = access_token_for(client, user)
    revoked = client.post("/oauth2/revoke", data={"token": token, "client_id": "public"})
    assert revoked.status_code == 200
    assert client.get("/users/me", headers=bearer(token)).status_code == 401
    fields = http_fields(access_lines)[-1]
    assert (fields["status"], fields["sub"], fields["client_id"]) == (401, None, None)


def test_forward_auth_with_a_path_logs_its_template(
    client: TestClient, user: dict[str, Any], access_lines: pytest.LogCaptureFixture
) -> None:
    token = access_token_for(client, user)
    response = client.post("/auth/verify/orders/42/secret-ish", headers=bearer(token))
    assert response.status_code == 200
    fields = http_fields(access_lines)[-1]
    assert fields["route"] == "/auth/verify/{path:path}"
    assert fields["sub"] == str(user["id"])


def test_an_unhandled_error_is_logged_as_500_and_carries_its_request_id(
    app: Any, access_lines: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(app, raise_server_exceptions=False) as client:

        async def broken(*args: Any) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(app.state.ctx.introspection_endpoint, "handle", broken)
        response = client.post(
            "/oauth2/introspect", data={"token": "x"}, headers={"X-Request-ID": "r-500"}
        )
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "r-500"
    fields = http_fields(access_lines)[-1]
    assert (fields["request_id"], fields["status"]) == ("r-500", 500)


# --- the formatters -------------------------------------------------------------------------------


def access_record(**fields: Any) -> logging.LogRecord:
    record = logging.LogRecord(ACCESS, logging.INFO, __file__, 1, "request", None, None)
    record.created = 1_700_000_000.25
    record.http = {  # type: ignore[attr-defined]
        "request_id": "abc",
        "method": "POST",
        "route": "/oauth2/token",
        "status": 200,
        "duration_ms": 3.5,
        "client_id": None,
        "sub": None,
        **fields,
    }
    return record


def test_the_text_line_is_readable_and_names_only_what_is_known() -> None:
    line = TextFormatter().format(access_record(client_id="app-1"))
    assert line == (
        "2023-11-14T22:13:20.250Z INFO authsvc.access "
        "POST /oauth2/token 200 3.5ms request_id=abc client_id=app-1"
    )


def test_the_json_line_is_one_object_with_every_field() -> None:
    entry = json.loads(JsonFormatter().format(access_record(sub="u-1")))
    assert entry == {
        "time": "2023-11-14T22:13:20.250Z",
        "level": "INFO",
        "logger": "authsvc.access",
        "message": "request",
        "request_id": "abc",
        "method": "POST",
        "route": "/oauth2/token",
        "status": 200,
        "duration_ms": 3.5,
        "client_id": None,
        "sub": "u-1",
    }


def test_the_json_format_renders_other_records_and_their_exceptions() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        record = logging.LogRecord("authsvc", logging.ERROR, __file__, 1, "x %s", ("y",), None)
        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "x y"
    assert entry["level"] == "ERROR"
    assert "ValueError: bad" in entry["exception"]


# --- as `authsvc serve` runs ----------------------------------------------------------------------


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_serve_writes_our_request_lines_and_not_uvicorns_access_log(
    tmp_path: Path, log_format: str
) -> None:
    with server_factory(tmp_path / "work", {}) as factory:
        server = factory.start(AUTHSVC_LOG_FORMAT=log_format)
        httpx.get(f"{server.base_url}/healthz", headers={"X-Request-ID": "serve-1"}, timeout=10)
        factory.stop_all()
    lines = [line for line in server.stderr.splitlines() if "serve-1" in line]
    assert len(lines) == 1, server.stderr
    if log_format == "json":
        entry = json.loads(lines[0])
        assert (entry["logger"], entry["route"], entry["status"]) == (ACCESS, "/healthz", 200)
    else:
        assert " INFO authsvc.access GET /healthz 200 " in lines[0]
    # uvicorn's own access line ('"GET /healthz HTTP/1.1" 200') is off.
    assert "HTTP/1.1" not in server.stderr
