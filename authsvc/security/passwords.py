"""Password hashing: the only module that imports passlib.

``bcrypt_sha256`` pre-hashes with SHA-256 so passwords longer than bcrypt's 72-byte limit are
compared exactly; plain ``bcrypt`` hashes (from imports or older deployments) still verify and
are upgraded on the next successful login.

bcrypt work runs only in a pool of its own, one thread per CPU, whose threads run at the
lowest scheduling priority (nice 19). A login storm then queues for the cores instead of
taking them: the event loop and the threadpool that other requests use are scheduled first,
and bcrypt gets every cycle they leave. (bcrypt releases the GIL, so the pool runs in
parallel with the loop.)
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import unicodedata
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext

from passlib.context import CryptContext

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 128
BCRYPT_MAX_BYTES = 72
# Longer candidates are refused without hashing them (passlib raises beyond 4096); the same
# bcrypt work is still spent, on a fixed input, so length does not shorten the answer.
MAX_VERIFY_LENGTH = 1024


def normalize_password(password: str) -> str:
    """NFC-normalize so the same password typed on different keyboards hashes the same."""
    return unicodedata.normalize("NFC", password)


def check_password_policy(password: str) -> str:
    """Return the normalized password or raise ``ValueError`` naming the rule it breaks."""
    normalized = normalize_password(password)
    if not MIN_PASSWORD_LENGTH <= len(normalized) <= MAX_PASSWORD_LENGTH:
        raise ValueError(
            f"password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long"
        )
    return normalized


def _lower_priority(niceness: int) -> None:
    try:
        # Linux applies PRIO_PROCESS with a thread id to that thread alone.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (OSError, AttributeError):
        pass  # elsewhere, or not permitted: hashing still works, at normal priority


class PasswordHasher:
    """``warm`` makes the dummy hash (see ``_dummy_hash``) at once in the background: what a
    server wants. A one-off command that never verifies an unknown user passes False."""

    def __init__(
        self,
        rounds: int,
        *,
        max_concurrency: int | None = None,
        niceness: int = 19,
        warm: bool = True,
        timer: Callable[[str], AbstractContextManager[object]] | None = None,
    ) -> None:
        # Times each bcrypt call in its pool thread (metrics), queueing excluded.
        self._timer = timer if timer is not None else (lambda _operation: nullcontext())
        self._context = CryptContext(
            schemes=["bcrypt_sha256", "bcrypt"],
            deprecated=["bcrypt"],
            bcrypt_sha256__rounds=rounds,
            # Pinning min and max makes needs_update() true whenever the configured cost
            # changed, in either direction, so the next login rehashes.
            bcrypt_sha256__min_rounds=rounds,
            bcrypt_sha256__max_rounds=rounds,
        )
        self._dummy: str | None = None
        self._dummy_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(
            max_workers=max_concurrency or os.cpu_count() or 1,
            thread_name_prefix="authsvc-bcrypt",
            initializer=_lower_priority,
            initargs=(niceness,),
        )
        # The pool's first job, so it is running or done before any verify starts: a verify
        # waiting for it never waits behind a queue.
        self._warming: Future[str] | None = self._pool.submit(self._make_dummy) if warm else None

    def _make_dummy(self) -> str:
        return self._hash(secrets.token_urlsafe(24))

    @property
    def _dummy_hash(self) -> str:
        # A real hash at the configured cost: verifying an unknown user against it costs the
        # same bcrypt work as a wrong password, so timing does not reveal which usernames exist.
        # Every caller waits for the one dummy: two made at once would double a verify's time.
        if self._warming is not None:
            return self._warming.result()
        with self._dummy_lock:
            if self._dummy is None:
                self._dummy = self._make_dummy()
            return self._dummy

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def hash(self, password: str) -> str:
        """Hash in the pool; blocks the calling thread (never call from the event loop)."""
        return self._pool.submit(self._hash, password).result()

    def verify(self, password: str, password_hash: str | None) -> tuple[bool, str | None]:
        """``verify_async`` for threads: blocks the calling thread until the pool answers."""
        return self._pool.submit(self._verify, password, password_hash).result()

    async def hash_async(self, password: str) -> str:
        return await asyncio.wrap_future(self._pool.submit(self._hash, password))

    async def verify_async(
        self, password: str, password_hash: str | None
    ) -> tuple[bool, str | None]:
        return await asyncio.wrap_future(self._pool.submit(self._verify, password, password_hash))

    def _hash(self, password: str) -> str:
        with self._timer("hash"):
            password_hash: str = self._context.hash(normalize_password(password))
        return password_hash

    def _verify(self, password: str, password_hash: str | None) -> tuple[bool, str | None]:
        with self._timer("verify"):
            return self._check(password, password_hash)

    def _check(self, password: str, password_hash: str | None) -> tuple[bool, str | None]:
        """Check a password; return (ok, new_hash) where new_hash is set when it needs rehashing.

        ``password_hash=None`` verifies against the dummy hash and always fails. A malformed
        stored hash is a failed login, never an exception.
        """
        normalized = normalize_password(password)
        if len(normalized) > MAX_VERIFY_LENGTH:
            self._context.verify("x" * MIN_PASSWORD_LENGTH, self._dummy_hash)
            return False, None
        if password_hash is None:
            self._context.verify(normalized, self._dummy_hash)
            return False, None
        try:
            if (
                len(normalized.encode("utf-8")) > BCRYPT_MAX_BYTES
                and self._context.identify(password_hash) == "bcrypt"
            ):
                return self._verify_legacy_truncated(normalized, password_hash)
            ok, new_hash = self._context.verify_and_update(normalized, password_hash)
        except ValueError:
            # passlib raises ValueError (UnknownHashError and friends) for hashes it cannot
            # parse; spend the same work so the failure is not distinguishable by timing.
            self._context.verify(normalized, self._dummy_hash)
            return False, None
        return bool(ok), new_hash

    def _verify_legacy_truncated(
        self, password: str, password_hash: str
    ) -> tuple[bool, str | None]:
        """Plain bcrypt only ever saw the first 72 bytes; bcrypt 5 refuses longer input.

        Hashes imported from such systems still verify on those bytes, and the upgrade hash
        covers the whole password so the truncation ends with the next login.
        """
        ok = bool(self._context.verify(password.encode("utf-8")[:BCRYPT_MAX_BYTES], password_hash))
        return (True, self._hash(password)) if ok else (False, None)
