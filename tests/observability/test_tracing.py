"""Tracing: with OTEL_EXPORTER_OTLP_ENDPOINT set, request and SQL spans reach an OTLP/HTTP
receiver (a real one, on a loopback port, decoding what the exporter sends); without it the
app has no tracing at all."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from authsvc.app import create_app
from authsvc.config import Settings
from tests.helpers import TOKEN_URL, USER_PASSWORD, bearer, password_login


class _Receiver(BaseHTTPRequestHandler):
    exports: list[ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        type(self).exports.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    exports: list[ExportTraceServiceRequest] = []
    handler = type("Handler", (_Receiver,), {"exports": exports})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", exports
    server.shutdown()
    server.server_close()


def _spans(exports: list[ExportTraceServiceRequest]) -> list[tuple[str, Any]]:
    return [
        (resource_spans.resource, span)
        for export in exports
        for resource_spans in export.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def test_request_and_sql_spans_are_exported_over_otlp(
    collector: tuple[str, list[ExportTraceServiceRequest]],
    make_settings: Callable[..., Settings],
    user: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, exports = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    # The user cache would answer /users/me without a query; read the database every time.
    app = create_app(make_settings(auth_cache_ttl=0))

    with TestClient(app) as client:
        token = password_login(client, "alice", USER_PASSWORD)["access_token"]
        assert client.get("/users/me", headers=bearer(token)).status_code == 200
        assert client.get("/healthz").status_code == 200
        # Credentials in a URL are refused (400), and must not reach the collector either.
        refused = client.post(f"{TOKEN_URL}?password={USER_PASSWORD}&client_secret=s3cr3t-42")
        assert refused.status_code == 400
        # Probes are left out by path: a Host header naming one hides nothing.
        hidden = client.post(
            TOKEN_URL, data={"grant_type": "password"}, headers={"Host": "metrics"}
        )
        assert hidden.status_code == 400
    # Leaving the app's lifespan shut its provider down, which exports what was buffered.

    spans = _spans(exports)
    names = {span.name for _, span in spans}
    assert {"POST /oauth2/token", "GET /users/me"} <= names
    assert [span.name for _, span in spans].count("POST /oauth2/token") == 3
    assert not any(name.startswith("GET /healthz") for name in names)
    sql = [span for _, span in spans if any(a.key == "db.system" for a in span.attributes)]
    assert sql, names
    services = {
        attribute.value.string_value
        for resource, _ in spans
        for attribute in resource.attributes
        if attribute.key == "service.name"
    }
    assert services == {"authsvc"}
    # A query runs inside the request that made it: same trace, a request span its ancestor.
    request_traces = {span.trace_id for _, span in spans if span.name == "GET /users/me"}
    assert any(span.trace_id in request_traces for span in sql)
    exported = b"".join(export.SerializeToString() for export in exports)
    assert USER_PASSWORD.encode() not in exported
    assert b"s3cr3t-42" not in exported
    assert token.encode() not in exported


def test_two_apps_in_one_process_each_export_their_own_sql_spans(
    collector: tuple[str, list[ExportTraceServiceRequest]],
    make_settings: Callable[..., Settings],
    user: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, exports = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    apps = {}
    for service in ("first", "second"):
        monkeypatch.setenv("OTEL_SERVICE_NAME", service)
        apps[service] = create_app(make_settings(auth_cache_ttl=0))

    with TestClient(apps["first"]) as first, TestClient(apps["second"]) as second:
        for client in (first, second):
            token = password_login(client, "alice", USER_PASSWORD)["access_token"]
            assert client.get("/users/me", headers=bearer(token)).status_code == 200

    sql_by_service: dict[str, int] = {}
    for resource, span in _spans(exports):
        if any(attribute.key == "db.system" for attribute in span.attributes):
            [service] = [
                a.value.string_value for a in resource.attributes if a.key == "service.name"
            ]
            sql_by_service[service] = sql_by_service.get(service, 0) + 1
    assert set(sql_by_service) == {"first", "second"}


def test_without_an_endpoint_the_app_is_not_instrumented(
    make_settings: Callable[..., Settings], migrated: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)

    app = create_app(make_settings())

    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
