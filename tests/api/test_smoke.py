from fastapi.testclient import TestClient


def test_admin_can_list_users(client: TestClient, admin_headers: dict[str, str]) -> None:
    response = client.get("/admin/users", headers=admin_headers)
    assert response.status_code == 200
    assert response.json()["total"] == 1


def test_user_without_admin_scope_is_forbidden(
    client: TestClient, user_headers: dict[str, str]
) -> None:
    response = client.get("/admin/users", headers=user_headers)
    assert response.status_code == 403
    assert response.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
