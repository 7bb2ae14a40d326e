"""The gateway's key ring follows the shared keys directory, so a key another replica rotated
in verifies here and is published here within one rescan interval. Only keys of the configured
algorithm are published; concurrent verifications of a just-rotated key all succeed; and the
event loop has ``verify_async``, which rescans in a thread."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from authsvc.security import keyring as keyring_module
from authsvc.security.keyring import KeyRing
from authsvc.security.keys import KeySet, build_key_set, load_keys, rotate_key
from authsvc.security.tokens import (
    AccessTokenSigner,
    AccessTokenVerifier,
    TokenValidationError,
    build_access_token_claims,
)
from tests.helpers import AUDIENCE, ISSUER, b64url, b64url_decode


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


# --- only the configured algorithm is published ----------------------------------------------


@pytest.mark.parametrize(("algorithm", "other"), [("RS256", "ES256"), ("ES256", "RS256")])
def test_key_file_of_another_algorithm_is_neither_published_nor_trusted(
    ring_dir: Path, clock: FakeClock, algorithm: str, other: str
) -> None:
    """A key left from before AUTHSVC_JWT_ALGORITHM changed verifies nothing here, so a guard
    downstream must not be given it either: it would accept tokens the gateway refuses."""
    stray = rotate_key(ring_dir, other)
    ring = make_ring(ring_dir, clock, algorithm)
    stray_token = AccessTokenSigner(stray).sign(
        build_access_token_claims(
            issuer=ISSUER, audience=AUDIENCE, subject="s", client_id="c", scopes=[], ttl=60
        )
    )

    published = ring.jwks()["keys"]

    assert {key.algorithm for key in ring.key_set.keys} == {algorithm, other}
    assert published
    assert {jwk["alg"] for jwk in published} == {algorithm}
    assert stray.kid not in {jwk["kid"] for jwk in published}
    with pytest.raises(TokenValidationError):
        ring.verify(stray_token)


def test_key_file_of_another_algorithm_rotated_in_later_is_not_published(
    ring_dir: Path, clock: FakeClock
) -> None:
    ring = make_ring(ring_dir, clock)
    before = ring.jwks()
    stray = rotate_key(ring_dir, "ES256")
    new = rotate_key(ring_dir, "RS256")
    clock.now += 1.0

    kids = {jwk["kid"] for jwk in ring.jwks()["keys"]}

    assert stray.kid in {key.kid for key in ring.key_set.keys}  # loaded, yet not published
    assert kids == {jwk["kid"] for jwk in before["keys"]} | {new.kid}


# --- concurrent verification of a just-rotated key -------------------------------------------


def test_threads_verifying_a_just_rotated_key_at_once_all_succeed(
    ring_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight request threads meet the new kid together: one rescans, the others wait for it
    and then verify with what it installed, instead of refusing a good token."""
    verifier = AccessTokenVerifier({}, algorithms=["RS256"], issuer=ISSUER, audience=AUDIENCE)
    ring = KeyRing(build_key_set(ring_dir, "RS256"), verifier, ring_dir, rescan_interval=0.05)
    listing = ring._list

    def slow_listing() -> frozenset[str]:
        time.sleep(0.05)  # a shared volume: the others arrive while the rescan runs
        return listing()

    monkeypatch.setattr(ring, "_list", slow_listing)
    rotate_key(ring_dir, "RS256")
    token, _ = sign_with_newest(ring_dir)
    time.sleep(0.06)  # the interval has passed: the next unknown kid rescans
    start = threading.Barrier(8)

    def verify() -> dict[str, Any]:
        start.wait(5)
        return ring.verify(token)

    with ThreadPoolExecutor(8) as pool:
        results = [future.result(10) for future in [pool.submit(verify) for _ in range(8)]]

    assert [claims["sub"] for claims in results] == ["s"] * 8


def test_a_rescan_stuck_past_the_lock_timeout_refuses_instead_of_hanging(
    ring_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = make_ring(ring_dir, clock)
    monkeypatch.setattr(keyring_module, "LOCK_TIMEOUT", 0.2)
    listing = ring._list
    stuck, release = threading.Event(), threading.Event()

    def stuck_listing() -> frozenset[str]:
        stuck.set()
        release.wait(10)
        return listing()

    monkeypatch.setattr(ring, "_list", stuck_listing)
    rotate_key(ring_dir, "RS256")
    token, _ = sign_with_newest(ring_dir)
    clock.now += 1.0
    with ThreadPoolExecutor(1) as pool:
        rescanning = pool.submit(ring.rescan)
        assert stuck.wait(5)
        started = time.monotonic()
        with pytest.raises(TokenValidationError) as refused:
            ring.verify(token)
        waited = time.monotonic() - started
        release.set()
        assert rescanning.result(10) is True

    assert refused.value.unknown_kid is not None
    assert 0.15 < waited < 2.0
    assert ring.verify(token)["sub"] == "s"  # the rescan that was stuck installed the key


# --- verify_async ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_verify_async_verifies_a_rotated_key_rescanning_off_the_event_loop(
    ring_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = make_ring(ring_dir, clock)
    old_token, _ = sign_with_newest(ring_dir)
    listing = ring._list
    listed_in: list[threading.Thread] = []

    def recording_listing() -> frozenset[str]:
        listed_in.append(threading.current_thread())
        return listing()

    monkeypatch.setattr(ring, "_list", recording_listing)
    assert (await ring.verify_async(old_token))["sub"] == "s"
    assert listed_in == []  # a known kid: no rescan at all

    rotate_key(ring_dir, "RS256")
    token, kid = sign_with_newest(ring_dir)
    clock.now += 1.0

    assert (await ring.verify_async(token))["sub"] == "s"
    assert len(listed_in) == 1
    assert listed_in[0] is not threading.current_thread()
    assert kid in ring.verifier.keys


@pytest.mark.anyio
async def test_verify_async_refuses_like_verify(ring_dir: Path, clock: FakeClock) -> None:
    ring = make_ring(ring_dir, clock)
    token, _ = sign_with_newest(ring_dir)
    signing_input, signature = token.rsplit(".", 1)
    flipped = bytearray(b64url_decode(signature))
    flipped[len(flipped) // 2] ^= 0x01
    with pytest.raises(TokenValidationError) as refused:
        await ring.verify_async(f"{signing_input}.{b64url(bytes(flipped))}")
    assert refused.value.unknown_kid is None

    other_dir = ring_dir.parent / "elsewhere"
    build_key_set(other_dir, "RS256")
    foreign, _ = sign_with_newest(other_dir)
    clock.now += 1.0
    with pytest.raises(TokenValidationError) as refused:
        await ring.verify_async(foreign)
    assert refused.value.unknown_kid is not None


@pytest.mark.anyio
async def test_concurrent_verify_async_of_a_rotated_key_all_succeed(
    ring_dir: Path, clock: FakeClock
) -> None:
    ring = make_ring(ring_dir, clock)
    rotate_key(ring_dir, "RS256")
    token, _ = sign_with_newest(ring_dir)
    clock.now += 1.0

    results = await asyncio.gather(*(ring.verify_async(token) for _ in range(8)))

    assert [claims["sub"] for claims in results] == ["s"] * 8
