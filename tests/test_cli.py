"""The ``authsvc`` console script, run as a subprocess the way an operator runs it.

Each test runs the command in its own ``tmp_path`` with an environment stripped of the
developer's ``AUTHSVC_*`` variables, so only what a test sets reaches the settings.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect

from authsvc.config import Settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.db.migrate import head_revision
from authsvc.security.keys import KeySet, ensure_signing_key, load_keys, rotate_key
from authsvc.services.users import UserService
from tests.helpers import authsvc_command, bearer, password_login, pem_files

PASSWORD = "correct-horse-battery"
UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
LONG_SECRET = "s" * 32


def clean_environment(**overrides: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AUTHSVC_")}
    env["AUTHSVC_BCRYPT_ROUNDS"] = "4"
    env.update(overrides)
    return env


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(tmp_path: Path) -> Run:
    """Run ``authsvc *args`` in tmp_path; keyword arguments become AUTHSVC_<NAME> variables."""

    def runner(*args: str, stdin: str = "", **settings: str) -> subprocess.CompletedProcess[str]:
        env = clean_environment(
            **{f"AUTHSVC_{name.upper()}": value for name, value in settings.items()}
        )
        return subprocess.run(
            [*authsvc_command(), *args],
            cwd=tmp_path,
            env=env,
            # Always give a stdin: an inherited terminal would make create-user prompt.
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return runner


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("authsvc: ")
    return lines[0]


# --- invalid settings --------------------------------------------------------------------

EVERY_COMMAND = [
    pytest.param(["serve", "--port", "1"], id="serve"),
    pytest.param(["create-user", "bob"], id="create-user"),
    pytest.param(["keys", "generate"], id="keys-generate"),
    pytest.param(["keys", "rotate"], id="keys-rotate"),
    pytest.param(["keys", "list"], id="keys-list"),
    pytest.param(["db", "upgrade"], id="db-upgrade"),
]


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_unknown_jwt_algorithm_fails_every_command_with_one_line_and_exit_2(
    run: Run, command: list[str], tmp_path: Path
) -> None:
    result = run(*command, stdin=PASSWORD + "\n", jwt_algorithm="PS512")

    line = assert_one_line_error(result, 2)
    assert line.startswith("authsvc: invalid setting AUTHSVC_JWT_ALGORITHM: ")
    assert result.stdout == ""
    assert not (tmp_path / "keys").exists()
    assert not (tmp_path / "authsvc.db").exists()


def test_bcrypt_rounds_below_4_names_the_setting_and_the_bound(run: Run) -> None:
    result = run("db", "upgrade", bcrypt_rounds="3")

    assert result.returncode == 2
    assert result.stderr == (
        "authsvc: invalid setting AUTHSVC_BCRYPT_ROUNDS: "
        "Input should be greater than or equal to 4\n"
    )


@pytest.mark.parametrize(
    "secret",
    [pytest.param(None, id="unset"), pytest.param("s" * 31, id="31-bytes")],
)
def test_hs256_without_a_32_byte_secret_fails_with_one_line_and_exit_2(
    run: Run, secret: str | None
) -> None:
    settings = {"jwt_algorithm": "HS256"}
    if secret is not None:
        settings["jwt_secret"] = secret

    result = run("db", "upgrade", **settings)

    line = assert_one_line_error(result, 2)
    assert "AUTHSVC_JWT_SECRET" in line
    assert "HS256" in line


def test_bad_value_in_dotenv_file_fails_with_one_line_and_exit_2(run: Run, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AUTHSVC_ACCESS_TOKEN_TTL=5\n", encoding="utf-8")

    result = run("db", "upgrade")

    line = assert_one_line_error(result, 2)
    assert line.startswith("authsvc: invalid setting AUTHSVC_ACCESS_TOKEN_TTL: ")


def test_environment_variable_overrides_dotenv_file(run: Run, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AUTHSVC_BCRYPT_ROUNDS=3\n", encoding="utf-8")

    result = run("db", "upgrade")  # the runner sets AUTHSVC_BCRYPT_ROUNDS=4

    assert result.returncode == 0, result.stderr


def test_dotenv_file_that_is_not_utf8_fails_with_one_line_and_exit_2(
    run: Run, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_bytes(b"AUTHSVC_ISSUER=http://caf\xe9.example\n")

    result = run("db", "upgrade")

    line = assert_one_line_error(result, 2)
    assert ".env" in line


def test_field_validator_message_does_not_leak_pydantic_prefix(run: Run) -> None:
    result = run("db", "upgrade", issuer="ftp://auth.example")

    line = assert_one_line_error(result, 2)
    assert line == (
        "authsvc: invalid setting AUTHSVC_ISSUER: must be an http(s) URL without query or fragment"
    )


def test_bootstrap_username_without_password_fails_with_one_line_and_exit_2(run: Run) -> None:
    result = run("db", "upgrade", bootstrap_admin_username="root")

    line = assert_one_line_error(result, 2)
    assert "AUTHSVC_BOOTSTRAP_ADMIN_PASSWORD" in line


# --- create-user -------------------------------------------------------------------------


@pytest.fixture
def create_user(run: Run, database_url: str) -> Run:
    """Run ``authsvc create-user *args`` against the test database; the password comes on stdin."""

    def runner(*args: str, stdin: str = PASSWORD + "\n") -> subprocess.CompletedProcess[str]:
        return run("create-user", *args, stdin=stdin, database_url=database_url)

    return runner


def find_user(settings: Settings, username: str) -> dict[str, Any] | None:
    engine = build_engine(settings)
    try:
        with build_sessionmaker(engine)() as session:
            user = UserService(session).get_by_username(username)
            if user is None:
                return None
            return {"username": user.username, "scopes": sorted(user.scope_names)}
    finally:
        engine.dispose()


def test_create_user_prints_name_id_and_no_scopes(create_user: Run) -> None:
    result = create_user("bob")

    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        rf"Created user 'bob' \({UUID_PATTERN}\) with scopes: -\n", result.stdout
    ), result.stdout


def test_create_user_password_from_stdin_logs_in(create_user: Run, client: TestClient) -> None:
    result = create_user("bob")
    assert result.returncode == 0, result.stderr

    body = password_login(client, "bob", PASSWORD)

    me = client.get("/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["username"] == "bob"
    assert me.json()["scopes"] == []


def test_create_user_for_existing_username_in_other_case_exits_1(
    create_user: Run, make_user: Callable[..., dict[str, Any]]
) -> None:
    make_user("bob")

    result = create_user("Bob")

    line = assert_one_line_error(result, 1)
    assert line == "authsvc: user 'Bob' already exists"


def test_create_user_with_short_password_exits_2_and_creates_nothing(
    create_user: Run, settings: Settings, migrated: None
) -> None:
    result = create_user("bob", stdin="short\n")

    line = assert_one_line_error(result, 2)
    assert line == "authsvc: password must be 8 to 128 characters long"
    assert find_user(settings, "bob") is None


def test_create_user_with_empty_stdin_exits_2(create_user: Run) -> None:
    result = create_user("bob", stdin="")

    assert_one_line_error(result, 2)


def test_create_user_with_invalid_username_exits_2(create_user: Run) -> None:
    result = create_user("bob smith")

    line = assert_one_line_error(result, 2)
    assert "username" in line


def test_create_user_admin_flag_grants_admin_scope(create_user: Run, client: TestClient) -> None:
    result = create_user("root", "--admin")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("with scopes: admin")

    body = password_login(client, "root", PASSWORD)

    assert body["scope"] == "admin"
    listing = client.get("/admin/users", headers=bearer(body["access_token"]))
    assert listing.status_code == 200
    assert [user["username"] for user in listing.json()["items"]] == ["root"]


def test_create_user_with_admin_flag_and_admin_scope_grants_it_once(
    create_user: Run, settings: Settings
) -> None:
    result = create_user("root", "--scope", "admin", "--admin")

    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("with scopes: admin")
    assert find_user(settings, "root") == {"username": "root", "scopes": ["admin"]}


def test_create_user_with_unknown_scope_exits_1_and_creates_nothing(
    create_user: Run, settings: Settings
) -> None:
    result = create_user("bob", "--scope", "reports:read")

    line = assert_one_line_error(result, 1)
    assert line == "authsvc: unknown scope: reports:read"
    assert find_user(settings, "bob") is None


# --- keys --------------------------------------------------------------------------------


def kid_of(path: Path) -> str:
    return path.stem.split("-", 1)[1]


def test_keys_generate_writes_one_private_key_with_mode_0600(run: Run, tmp_path: Path) -> None:
    result = run("keys", "generate")

    assert result.returncode == 0, result.stderr
    [key_file] = pem_files(tmp_path / "keys")
    assert result.stdout == f"Generated RS256 key {kid_of(key_file)} (keys/{key_file.name})\n"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)


def test_keys_generate_with_a_key_present_keeps_it(run: Run, tmp_path: Path) -> None:
    existing, _ = ensure_signing_key(tmp_path / "keys", "RS256")
    assert existing.path is not None
    content = existing.path.read_bytes()

    result = run("keys", "generate")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Already present: RS256 key {existing.kid} ")
    assert pem_files(tmp_path / "keys") == [existing.path]
    assert existing.path.read_bytes() == content


def test_keys_generate_honours_keys_dir_setting(run: Run, tmp_path: Path) -> None:
    result = run("keys", "generate", keys_dir=str(tmp_path / "elsewhere"), jwt_algorithm="ES256")

    assert result.returncode == 0, result.stderr
    assert len(pem_files(tmp_path / "elsewhere")) == 1
    assert not (tmp_path / "keys").exists()


def test_keys_generate_with_es256_creates_p256_key(run: Run, tmp_path: Path) -> None:
    result = run("keys", "generate", jwt_algorithm="ES256")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Generated ES256 key ")
    [key_file] = pem_files(tmp_path / "keys")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)


def test_keys_rotate_adds_a_second_key_that_becomes_active(run: Run, tmp_path: Path) -> None:
    old, _ = ensure_signing_key(tmp_path / "keys", "RS256")

    result = run("keys", "rotate")

    assert result.returncode == 0, result.stderr
    files = pem_files(tmp_path / "keys")
    assert len(files) == 2
    assert old.path in files
    [new_file] = [path for path in files if path != old.path]
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o600
    assert result.stdout == (
        f"Rotated: new RS256 key {kid_of(new_file)} (keys/{new_file.name}) "
        "signs from the next start\n"
    )
    key_set = KeySet(algorithm="RS256", keys=tuple(load_keys(tmp_path / "keys")))
    assert key_set.active.kid == kid_of(new_file)


def test_keys_list_marks_only_the_active_key(run: Run, tmp_path: Path) -> None:
    old, _ = ensure_signing_key(tmp_path / "keys", "RS256")
    new = rotate_key(tmp_path / "keys", "RS256")

    result = run("keys", "list")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"* {new.kid}  RS256  ")
    assert lines[1].startswith(f"  {old.kid}  RS256  ")


def test_keys_list_on_empty_directory_says_so(run: Run) -> None:
    result = run("keys", "list")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "No keys in keys\n"


def test_keys_list_with_non_key_pem_fails_with_one_line(run: Run, tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "notes.pem").write_text("not a key\n", encoding="utf-8")

    result = run("keys", "list")

    line = assert_one_line_error(result, 1)
    assert "notes.pem" in line


@pytest.mark.parametrize("command", ["generate", "rotate", "list"])
def test_keys_commands_refuse_hs256(run: Run, tmp_path: Path, command: str) -> None:
    result = run("keys", command, jwt_algorithm="HS256", jwt_secret=LONG_SECRET)

    line = assert_one_line_error(result, 1)
    assert "HS256" in line
    assert not (tmp_path / "keys").exists()


def test_keys_generate_with_keys_dir_naming_a_file_fails_with_one_line(
    run: Run, tmp_path: Path
) -> None:
    (tmp_path / "not-a-dir").write_text("", encoding="utf-8")

    result = run("keys", "generate", keys_dir="not-a-dir")

    line = assert_one_line_error(result, 1)
    assert "not-a-dir" in line


# --- db ----------------------------------------------------------------------------------


def test_db_upgrade_creates_schema_and_prints_revision(run: Run, tmp_path: Path) -> None:
    result = run("db", "upgrade")

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Database at revision {head_revision()}\n"
    engine = create_engine(f"sqlite:///{tmp_path / 'authsvc.db'}")
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"users", "scopes", "user_scopes", "alembic_version"} <= tables


def test_db_upgrade_on_configured_database_prints_revision(run: Run, database_url: str) -> None:
    result = run("db", "upgrade", database_url=database_url)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Database at revision {head_revision()}\n"
