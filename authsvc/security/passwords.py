"""Password hashing: the only module that imports passlib.

``bcrypt_sha256`` pre-hashes with SHA-256 so passwords longer than bcrypt's 72-byte limit are
compared exactly; plain ``bcrypt`` hashes (from imports or older deployments) still verify and
are upgraded on the next successful login. bcrypt work runs in worker threads behind a limiter
sized to the CPU count, so a login storm queues for the cores instead of starving the event
loop or the threadpool that other requests use.
"""

from __future__ import annotations

import os
import secrets
import unicodedata
from functools import partial

import anyio
import anyio.to_thread
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


class PasswordHasher:
    def __init__(self, rounds: int, *, max_concurrency: int | None = None) -> None:
        self._context = CryptContext(
            schemes=["bcrypt_sha256", "bcrypt"],
            deprecated=["bcrypt"],
            bcrypt_sha256__rounds=rounds,
            # Pinning min and max makes needs_update() true whenever the configured cost
            # changed, in either direction, so the next login rehashes.
            bcrypt_sha256__min_rounds=rounds,
            bcrypt_sha256__max_rounds=rounds,
        )
        # A real hash at the configured cost: verifying an unknown user against it costs the
        # same bcrypt work as a wrong password, so timing does not reveal which usernames exist.
        self._dummy_hash = self._context.hash(secrets.token_urlsafe(24))
        self._limiter = anyio.CapacityLimiter(max_concurrency or os.cpu_count() or 1)

    def hash(self, password: str) -> str:
        password_hash: str = self._context.hash(normalize_password(password))
        return password_hash

    def verify(self, password: str, password_hash: str | None) -> tuple[bool, str | None]:
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
        return (True, self.hash(password)) if ok else (False, None)

    async def hash_async(self, password: str) -> str:
        return await anyio.to_thread.run_sync(partial(self.hash, password), limiter=self._limiter)

    async def verify_async(
        self, password: str, password_hash: str | None
    ) -> tuple[bool, str | None]:
        return await anyio.to_thread.run_sync(
            partial(self.verify, password, password_hash), limiter=self._limiter
        )
