"""The OAuth2 endpoints are served through ``RouteShortcuts``, past FastAPI's routing: they
must still answer errors as the rest of the app does, and still be documented."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from authsvc.api.shortcuts import RouteShortcuts
from authsvc.context import AppContext
from tests.helpers import assert_no_store, basic, create_client


def test_an_unexpected_error_on_a_shortcut_route_is_the_apps_500_without_a_traceback(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(app, raise_server_exceptions=False) as client:
        ctx: AppContext = app.state.ctx

        async def broken(*args: Any) -> None:
            raise RuntimeError("secret detail")

        monkeypatch.setattr(ctx.introspection_endpoint, "handle", broken)
        response = client.post("/oauth2/introspect", data={"token": "x"})
    assert response.status_code == 500
    assert response.json() == {
        "error": "server_error",
        "error_description": "Internal server error",
    }
    assert "secret detail" not in response.text


def test_an_oauth2_error_on_a_shortcut_route_is_rendered_by_the_apps_handler(
    client: TestClient,
) -> None:
    response = client.post("/oauth2/token", data={"grant_type": "magic"})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"
    assert_no_store(response)


def test_introspection_through_the_shortcut_answers_an_authenticated_client(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    registered = create_client(client, admin_headers, grant_types=["client_credentials"])
    response = client.post(
        "/oauth2/introspect",
        data={"token": "not-a-token"},
        headers=basic(registered["client_id"], registered["client_secret"]),
    )
    assert response.status_code == 200
    assert response.json() == {"active": False}
    assert_no_store(response)


@pytest.mark.parametrize("path", ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"])
def test_other_methods_on_a_shortcut_path_fall_through_to_405(
    client: TestClient, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize("path", ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"])
def test_posts_to_the_oauth2_endpoints_never_reach_the_router(app: FastAPI, path: str) -> None:
    seen: list[dict[str, Any]] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        await app(scope, receive, send)

    with TestClient(app) as started, TestClient(recording) as client:
        assert started.app is app
        client.post(path, data={"grant_type": "magic", "token": "x"})
    # The router would have put the matched route in the scope.
    assert "route" not in seen[-1]
    assert seen[-1]["authsvc.route"] == path


def test_openapi_still_documents_the_shortcut_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"):
        assert "post" in paths[path]
    token_body = paths["/oauth2/token"]["post"]["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in token_body


# --- the middleware on its own ------------------------------------------------------------------


class Refused(Exception):
    pass


class RefusedLoudly(Refused):
    pass


async def refuse(request: Request) -> Response:
    raise RefusedLoudly()


async def crash(request: Request) -> Response:
    raise KeyError("boom")


async def echo(request: Request) -> Response:
    return PlainTextResponse(f"{request.method} {request.url.path} {(await request.body())!r}")


def shortcut_app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def slow_echo() -> dict[str, str]:
        return {"served_by": "fastapi"}

    @app.get("/echo")
    async def get_echo() -> dict[str, str]:
        return {"served_by": "fastapi"}

    app.add_middleware(
        RouteShortcuts,
        routes={("POST", "/echo"): echo, ("POST", "/refuse"): refuse, ("POST", "/crash"): crash},
        handlers=lambda: app.exception_handlers,
    )

    # Added after the middleware: looked up when the exception happens.
    async def on_refused(request: Request, exc: Exception) -> Response:
        return JSONResponse({"refused": type(exc).__name__}, status_code=418)

    app.add_exception_handler(Refused, on_refused)
    return app


def test_a_shortcut_route_gets_the_request_and_its_body() -> None:
    with TestClient(shortcut_app()) as client:
        response = client.post("/echo", content=b"payload")
    assert response.text == "POST /echo b'payload'"


def test_a_method_without_a_shortcut_goes_down_the_normal_stack() -> None:
    with TestClient(shortcut_app()) as client:
        assert client.get("/echo").json() == {"served_by": "fastapi"}


def test_an_exception_is_handled_by_the_handler_of_its_nearest_base_class() -> None:
    with TestClient(shortcut_app()) as client:
        response = client.post("/refuse")
    assert response.status_code == 418
    assert response.json() == {"refused": "RefusedLoudly"}


def test_the_apps_catch_all_handler_is_left_to_the_server_error_middleware() -> None:
    # ServerErrorMiddleware answers with the catch-all handler and re-raises, so the server
    # still logs the traceback; calling the handler here would swallow the exception.
    app = shortcut_app()

    async def on_anything(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("caught", status_code=500)

    app.add_exception_handler(Exception, on_anything)
    with TestClient(app) as client, pytest.raises(KeyError):
        client.post("/crash")
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/crash").text == "caught"


def test_an_exception_without_a_handler_reaches_the_server_error_middleware() -> None:
    with TestClient(shortcut_app(), raise_server_exceptions=False) as client:
        response = client.post("/crash")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
