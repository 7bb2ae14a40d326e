"""PasswordHasher and the password policy; the login-time rehash through the API."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

import anyio
import bcrypt
import pytest
from fastapi.testclient import TestClient

from authsvc.app import create_app
from authsvc.config import Settings
from authsvc.db.engine import build_engine, build_sessionmaker
from authsvc.security.passwords import (
    MAX_PASSWORD_LENGTH,
    MAX_VERIFY_LENGTH,
    MIN_PASSWORD_LENGTH,
    PasswordHasher,
    check_password_policy,
    normalize_password,
)
from authsvc.services.users import UserService
from tests.helpers import TEST_BCRYPT_ROUNDS, USER_PASSWORD, password_login, token_request

PASSWORD = "correct horse battery staple"
NFC = "caf\u00e9-cr\u00e8me-br\u00fbl\u00e9e"
NFD = unicodedata.normalize("NFD", NFC)


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(TEST_BCRYPT_ROUNDS)


def legacy_bcrypt(password: str | bytes, rounds: int = TEST_BCRYPT_ROUNDS) -> str:
    secret = password.encode() if isinstance(password, str) else password
    return bcrypt.hashpw(secret, bcrypt.gensalt(rounds)).decode("ascii")


def stored_hash(settings: Settings, username: str) -> str:
    engine = build_engine(settings)
    try:
        with build_sessionmaker(engine)() as session:
            user = UserService(session).get_by_username(username)
            assert user is not None
            return user.password_hash
    finally:
        engine.dispose()


# --- hash and verify ----------------------------------------------------------------------


def test_hash_is_bcrypt_sha256_at_configured_cost(hasher: PasswordHasher) -> None:
    password_hash = hasher.hash(PASSWORD)

    assert password_hash.startswith(f"$bcrypt-sha256$v=2,t=2b,r={TEST_BCRYPT_ROUNDS}$")


def test_hash_never_contains_the_password(hasher: PasswordHasher) -> None:
    assert PASSWORD not in hasher.hash(PASSWORD)


def test_same_password_hashes_differently_each_time(hasher: PasswordHasher) -> None:
    assert hasher.hash(PASSWORD) != hasher.hash(PASSWORD)


def test_correct_password_verifies_without_rehash(hasher: PasswordHasher) -> None:
    assert hasher.verify(PASSWORD, hasher.hash(PASSWORD)) == (True, None)


def test_wrong_password_does_not_verify(hasher: PasswordHasher) -> None:
    assert hasher.verify("correct horse battery stapler", hasher.hash(PASSWORD)) == (False, None)


def test_empty_password_does_not_verify_against_a_real_hash(hasher: PasswordHasher) -> None:
    assert hasher.verify("", hasher.hash(PASSWORD)) == (False, None)


@pytest.mark.parametrize(
    "prefix",
    ["a" * 72, "\u00e9" * 36, "\U0001f600" * 18],
    ids=["ascii", "two-byte", "four-byte"],
)
def test_passwords_differing_only_after_byte_72_do_not_match(
    hasher: PasswordHasher, prefix: str
) -> None:
    assert len(prefix.encode()) == 72
    password_hash = hasher.hash(prefix + "1")

    assert hasher.verify(prefix + "1", password_hash) == (True, None)
    assert hasher.verify(prefix + "2", password_hash) == (False, None)
    assert hasher.verify(prefix, password_hash) == (False, None)


def test_very_long_password_verifies_exactly(hasher: PasswordHasher) -> None:
    password = "x" * MAX_VERIFY_LENGTH

    assert hasher.verify(password, hasher.hash(password)) == (True, None)
    assert hasher.verify(password[:-1] + "y", hasher.hash(password)) == (False, None)


def test_password_beyond_verify_limit_is_refused_without_error(hasher: PasswordHasher) -> None:
    password = "x" * (MAX_VERIFY_LENGTH + 1)

    assert hasher.verify(password, hasher.hash("x" * 8)) == (False, None)
    assert hasher.verify("x" * 5000, None) == (False, None)


def test_nfd_password_verifies_against_nfc_hash(hasher: PasswordHasher) -> None:
    assert NFC != NFD

    assert hasher.verify(NFD, hasher.hash(NFC)) == (True, None)


def test_nfc_password_verifies_against_nfd_hash(hasher: PasswordHasher) -> None:
    assert hasher.verify(NFC, hasher.hash(NFD)) == (True, None)


def test_normalize_password_returns_nfc() -> None:
    assert normalize_password(NFD) == NFC


def test_compatibility_characters_are_not_folded(hasher: PasswordHasher) -> None:
    # NFC, not NFKC: a fullwidth letter is a different password.
    assert hasher.verify("\uff41" * 10, hasher.hash("a" * 10)) == (False, None)


def test_verify_async_matches_verify(hasher: PasswordHasher) -> None:
    password_hash = anyio.run(hasher.hash_async, PASSWORD)

    assert anyio.run(hasher.verify_async, PASSWORD, password_hash) == (True, None)
    assert anyio.run(hasher.verify_async, "wrong", password_hash) == (False, None)


# --- legacy bcrypt and rehash ---------------------------------------------------------------


def test_plain_bcrypt_hash_verifies_and_returns_upgrade_hash(hasher: PasswordHasher) -> None:
    ok, new_hash = hasher.verify(PASSWORD, legacy_bcrypt(PASSWORD))

    assert ok is True
    assert new_hash is not None
    assert new_hash.startswith(f"$bcrypt-sha256$v=2,t=2b,r={TEST_BCRYPT_ROUNDS}$")
    assert hasher.verify(PASSWORD, new_hash) == (True, None)


def test_plain_bcrypt_hash_with_wrong_password_returns_no_upgrade(
    hasher: PasswordHasher,
) -> None:
    assert hasher.verify("wrong-password", legacy_bcrypt(PASSWORD)) == (False, None)


def test_plain_bcrypt_hash_of_nfc_password_verifies_nfd_input(hasher: PasswordHasher) -> None:
    ok, new_hash = hasher.verify(NFD, legacy_bcrypt(NFC))

    assert ok is True
    assert new_hash is not None


def test_plain_bcrypt_hash_of_long_password_verifies_with_full_password(
    hasher: PasswordHasher,
) -> None:
    # Legacy bcrypt silently used only the first 72 bytes, so a deployment that hashed a long
    # password stored bcrypt(password[:72]); the user still types the whole password.
    password = "p" * 72 + "-and-the-rest"
    legacy = legacy_bcrypt(password.encode()[:72])

    ok, new_hash = hasher.verify(password, legacy)

    assert ok is True
    assert new_hash is not None
    # The upgrade is to an exact hash of the whole password, not of its first 72 bytes.
    assert hasher.verify(password, new_hash) == (True, None)
    assert hasher.verify(password[:72], new_hash) == (False, None)


@pytest.mark.parametrize(
    ("stored_rounds", "configured_rounds"),
    [pytest.param(4, 5, id="higher"), pytest.param(5, 4, id="lower")],
)
def test_changed_configured_cost_triggers_rehash(
    stored_rounds: int, configured_rounds: int
) -> None:
    old = PasswordHasher(stored_rounds).hash(PASSWORD)

    ok, new_hash = PasswordHasher(configured_rounds).verify(PASSWORD, old)

    assert ok is True
    assert new_hash is not None
    assert new_hash.startswith(f"$bcrypt-sha256$v=2,t=2b,r={configured_rounds}$")


def test_wrong_password_at_old_cost_returns_no_rehash() -> None:
    old = PasswordHasher(4).hash(PASSWORD)

    assert PasswordHasher(5).verify("wrong-password", old) == (False, None)


# --- malformed hashes and the dummy hash ----------------------------------------------------


@pytest.mark.parametrize(
    "bad_hash",
    [
        "",
        "x",
        "not-a-hash",
        "*",
        "!",
        "$1$abc$def",
        "$2b$04$short",
        "$2b$4$" + "a" * 53,
        "$bcrypt-sha256$v=2,t=2b,r=04$bad$bad",
        "$argon2id$v=19$m=65536,t=3,p=4$abc$def",
        "$2b$04$" + "\u00e9" * 53,
        "\x00",
    ],
)
def test_malformed_hash_is_a_failed_verification(hasher: PasswordHasher, bad_hash: str) -> None:
    assert hasher.verify(PASSWORD, bad_hash) == (False, None)


def test_truncated_hash_is_a_failed_verification(hasher: PasswordHasher) -> None:
    assert hasher.verify(PASSWORD, hasher.hash(PASSWORD)[:-5]) == (False, None)


@pytest.mark.parametrize("password", [PASSWORD, "", "x" * 1000, NFD])
def test_verify_against_none_runs_dummy_and_fails(hasher: PasswordHasher, password: str) -> None:
    assert hasher.verify(password, None) == (False, None)


def test_dummy_verify_spends_bcrypt_work(
    hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_verify = hasher._context.verify

    def spy(secret: str, password_hash: str) -> bool:
        calls.append(password_hash)
        return bool(real_verify(secret, password_hash))

    monkeypatch.setattr(hasher._context, "verify", spy)

    hasher.verify(PASSWORD, None)

    assert len(calls) == 1
    assert calls[0].startswith(f"$bcrypt-sha256$v=2,t=2b,r={TEST_BCRYPT_ROUNDS}$")


# --- policy -------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [MIN_PASSWORD_LENGTH, 64, MAX_PASSWORD_LENGTH])
def test_policy_accepts_lengths_from_8_to_128(length: int) -> None:
    assert check_password_policy("p" * length) == "p" * length


@pytest.mark.parametrize("length", [0, 1, MIN_PASSWORD_LENGTH - 1])
def test_policy_rejects_fewer_than_8_characters(length: int) -> None:
    with pytest.raises(ValueError, match="8 to 128 characters"):
        check_password_policy("p" * length)


@pytest.mark.parametrize("length", [MAX_PASSWORD_LENGTH + 1, 1000])
def test_policy_rejects_more_than_128_characters(length: int) -> None:
    with pytest.raises(ValueError, match="8 to 128 characters"):
        check_password_policy("p" * length)


def test_policy_bounds_are_8_and_128() -> None:
    assert (MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH) == (8, 128)


def test_policy_counts_characters_not_bytes() -> None:
    password = "\U0001f600" * MAX_PASSWORD_LENGTH

    assert check_password_policy(password) == password


def test_policy_counts_characters_after_nfc() -> None:
    # 8 NFC characters, 16 NFD code points: accepted and returned in NFC.
    assert check_password_policy("e\u0301" * 8) == "\u00e9" * 8
    # 65 NFC characters, 130 NFD code points: within the limit once normalized.
    assert check_password_policy("e\u0301" * 65) == "\u00e9" * 65


# --- through the API ----------------------------------------------------------------------


def test_login_with_changed_cost_rehashes_stored_password(
    make_settings: Callable[..., Settings], user: dict[str, Any]
) -> None:
    settings = make_settings(bcrypt_rounds=5)
    before = stored_hash(settings, "alice")

    with TestClient(create_app(settings)) as client:
        password_login(client, "alice", USER_PASSWORD)

    after = stored_hash(settings, "alice")
    assert before.startswith(f"$bcrypt-sha256$v=2,t=2b,r={TEST_BCRYPT_ROUNDS}$")
    assert after != before
    assert after.startswith("$bcrypt-sha256$v=2,t=2b,r=5$")
    assert PasswordHasher(5).verify(USER_PASSWORD, after) == (True, None)


def test_login_with_unchanged_cost_keeps_stored_hash(
    client: TestClient, settings: Settings, user: dict[str, Any]
) -> None:
    before = stored_hash(settings, "alice")

    password_login(client, "alice", USER_PASSWORD)

    assert stored_hash(settings, "alice") == before


def test_failed_login_with_changed_cost_keeps_stored_hash(
    make_settings: Callable[..., Settings], user: dict[str, Any]
) -> None:
    settings = make_settings(bcrypt_rounds=5)
    before = stored_hash(settings, "alice")

    with TestClient(create_app(settings)) as client:
        response = token_request(client, "alice", "wrong-password")

    assert response.status_code == 400
    assert stored_hash(settings, "alice") == before


def test_login_upgrades_plain_bcrypt_hash(
    client: TestClient, settings: Settings, make_user: Callable[..., dict[str, Any]]
) -> None:
    legacy = legacy_bcrypt(USER_PASSWORD)
    make_user("legacy", USER_PASSWORD, password_hash=legacy)

    password_login(client, "legacy", USER_PASSWORD)

    upgraded = stored_hash(settings, "legacy")
    assert upgraded != legacy
    assert upgraded.startswith(f"$bcrypt-sha256$v=2,t=2b,r={TEST_BCRYPT_ROUNDS}$")
    assert PasswordHasher(TEST_BCRYPT_ROUNDS).verify(USER_PASSWORD, upgraded) == (True, None)
    # The upgraded hash keeps working for the next login.
    password_login(client, "legacy", USER_PASSWORD)
