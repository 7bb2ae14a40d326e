"""The gateway's key ring follows the shared keys directory, so a key another replica rotated
in verifies here and is published here within one rescan interval."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from authsvc.security.keyring import KeyRing
from authsvc.security.keys import KeySet, build_key_set, load_keys, rotate_key
from authsvc.security.tokens import (
    AccessTokenSigner,
    AccessTokenVerifier,
    TokenValidationError,
    build_access_token_claims,
)
from tests.helpers import AUDIENCE, ISSUER


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_ring(keys_dir: Path, clock: FakeClock, algorithm: str = "RS256") -> KeyRing:
    verifier = AccessTokenVerifier(
        {}, algorithms=[algorithm], issuer=ISSUER, audience=AUDIENCE, leeway=0
    )
    key_set = build_key_set(keys_dir, algorithm)
    return KeyRing(key_set, verifier, keys_dir, rescan_interval=1.0, clock=clock)


def sign_with_newest(keys_dir: Path) -> tuple[str, str]:
    """A token signed by the newest key in the directory, as a restarted replica would."""
    key = load_keys(keys_dir)[0]
    claims = build_access_token_claims(
        issuer=ISSUER, audience=AUDIENCE, subject="s", client_id="c", scopes=[], ttl=60
    )
    return AccessTokenSigner(key).sign(claims), key.kid


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ring_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


def test_token_of_a_key_rotated_in_elsewhere_verifies_after_one_rescan(
    ring_dir: Path, clock: FakeClock
) -> None:
    ring = make_ring(ring_dir, clock)
    rotate_key(ring_dir, "RS256")
    token, kid = sign_with_newest(ring_dir)
    clock.now += 1.0
    assert ring.verify(token)["sub"] == "s"
    assert kid in {jwk["kid"] for jwk in ring.jwks()["keys"]}


def test_rescans_happen_at_most_once_per_interval(ring_dir: Path, clock: FakeClock) -> None:
    ring = make_ring(ring_dir, clock)
    clock.now += 0.5
    rotate_key(ring_dir, "RS256")
    token, _ = sign_with_newest(ring_dir)
    with pytest.raises(TokenValidationError) as refused:
        ring.verify(token)
    assert refused.value.unknown_kid is not None
    clock.now += 0.6
    assert ring.verify(token)["sub"] == "s"


def test_unknown_kid_flood_lists_the_directory_once_per_interval(
    ring_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = make_ring(ring_dir, clock)
    listings = 0
    original = ring._list

    def counting_list() -> frozenset[str]:
        nonlocal listings
        listings += 1
        return original()

    monkeypatch.setattr(ring, "_list", counting_list)
    other_dir = ring_dir.parent / "elsewhere"
    build_key_set(other_dir, "RS256")  # a key no replica of ours has
    token, _ = sign_with_newest(other_dir)
    clock.now += 5
    for _ in range(100):
        with pytest.raises(TokenValidationError):
            ring.verify(token)
    assert listings == 1


def test_published_jwks_follows_the_directory_within_an_interval(
    ring_dir: Path, clock: FakeClock
) -> None:
    ring = make_ring(ring_dir, clock)
    before = {jwk["kid"] for jwk in ring.jwks()["keys"]}
    new = rotate_key(ring_dir, "RS256")
    assert {jwk["kid"] for jwk in ring.jwks()["keys"]} == before
    clock.now += 1.0
    assert {jwk["kid"] for jwk in ring.jwks()["keys"]} == before | {new.kid}


def test_a_deleted_key_file_stops_verifying_after_a_rescan(
    ring_dir: Path, clock: FakeClock
) -> None:
    ring = make_ring(ring_dir, clock)
    old_token, old_kid = sign_with_newest(ring_dir)
    rotate_key(ring_dir, "RS256")
    clock.now += 1.0
    ring.rescan()
    assert ring.verify(old_token)["sub"] == "s"
    for path in ring_dir.glob(f"*-{old_kid}.pem"):
        path.unlink()
    clock.now += 1.0
    assert ring.rescan() is True
    with pytest.raises(TokenValidationError):
        ring.verify(old_token)


def test_an_unreadable_new_file_keeps_the_keys_already_loaded(
    ring_dir: Path, clock: FakeClock
) -> None:
    ring = make_ring(ring_dir, clock)
    token, _ = sign_with_newest(ring_dir)
    (ring_dir / "20990101T000000000000Z-broken.pem").write_text("not a key")
    clock.now += 1.0
    assert ring.rescan() is False
    assert ring.verify(token)["sub"] == "s"


def test_hs256_ring_never_touches_the_directory(tmp_path: Path, clock: FakeClock) -> None:
    verifier = AccessTokenVerifier({}, algorithms=["HS256"], issuer=ISSUER, audience=AUDIENCE)
    key_set = build_key_set(tmp_path, "HS256", b"0123456789abcdef0123456789abcdef")
    ring = KeyRing(key_set, verifier, None, clock=clock)
    clock.now += 10
    assert ring.rescan() is False
    assert ring.jwks() == {"keys": []}


def test_real_clock_ring_picks_up_a_rotation(ring_dir: Path) -> None:
    verifier = AccessTokenVerifier({}, algorithms=["RS256"], issuer=ISSUER, audience=AUDIENCE)
    ring = KeyRing(build_key_set(ring_dir, "RS256"), verifier, ring_dir, rescan_interval=0.05)
    rotate_key(ring_dir, "RS256")
    token, _ = sign_with_newest(ring_dir)
    time.sleep(0.06)
    assert ring.verify(token)["sub"] == "s"
    assert isinstance(ring.key_set, KeySet)
