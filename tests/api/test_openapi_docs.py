"""The OpenAPI document declares the password flow; Swagger UI and ReDoc are served."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def openapi(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _password_schemes(openapi: dict[str, Any]) -> dict[str, dict[str, Any]]:
    schemes = openapi["components"]["securitySchemes"]
    return {
        name: scheme
        for name, scheme in schemes.items()
        if scheme["type"] == "oauth2" and "password" in scheme["flows"]
    }


def test_openapi_declares_one_oauth2_password_flow(openapi: dict[str, Any]) -> None:
    assert len(_password_schemes(openapi)) == 1


def test_password_flow_token_url_is_the_token_endpoint(openapi: dict[str, Any]) -> None:
    (scheme,) = _password_schemes(openapi).values()

    assert scheme["flows"]["password"]["tokenUrl"] == "oauth2/token"


def test_password_flow_offers_admin_scope(openapi: dict[str, Any]) -> None:
    (scheme,) = _password_schemes(openapi).values()

    assert "admin" in scheme["flows"]["password"]["scopes"]


def test_users_me_requires_the_password_flow(openapi: dict[str, Any]) -> None:
    (name,) = _password_schemes(openapi)

    security = openapi["paths"]["/users/me"]["get"]["security"]

    assert any(name in requirement for requirement in security)


def test_admin_routes_require_admin_scope(openapi: dict[str, Any]) -> None:
    (name,) = _password_schemes(openapi)

    security = openapi["paths"]["/admin/users"]["get"]["security"]

    assert any("admin" in requirement.get(name, []) for requirement in security)


def test_token_endpoint_is_documented_as_form_request(openapi: dict[str, Any]) -> None:
    operation = openapi["paths"]["/oauth2/token"]["post"]

    content = operation["requestBody"]["content"]
    assert list(content) == ["application/x-www-form-urlencoded"]
    schema = content["application/x-www-form-urlencoded"]["schema"]
    assert schema["properties"]["grant_type"]["enum"] == [
        "password",
        "refresh_token",
        "client_credentials",
    ]
    assert schema["properties"]["password"]["format"] == "password"


@pytest.mark.parametrize("path", ["/healthz", "/.well-known/jwks.json"])
def test_public_routes_require_no_security(openapi: dict[str, Any], path: str) -> None:
    assert "security" not in openapi["paths"][path]["get"]


def test_openapi_title_is_authsvc(openapi: dict[str, Any]) -> None:
    assert openapi["info"]["title"] == "authsvc"


def test_swagger_ui_is_served(client: TestClient) -> None:
    response = client.get("/docs")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in response.text.lower()


def test_swagger_ui_loads_this_apps_openapi(client: TestClient) -> None:
    assert "/openapi.json" in client.get("/docs").text


def test_redoc_is_served(client: TestClient) -> None:
    response = client.get("/redoc")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "redoc" in response.text.lower()
