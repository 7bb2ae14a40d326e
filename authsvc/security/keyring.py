"""The keys a running gateway verifies with and publishes, kept in step with the keys directory.

Replicas share one keys directory (a mounted volume or secret). When one of them is restarted
after ``authsvc keys rotate`` it signs with a key the others loaded nothing about. So each
replica re-reads the directory when it meets a token with an unknown ``kid``, and before it
serves the JWKS, at most once per ``rescan_interval`` (1 s): a rotated key is verified and
published by every replica within a second of its first use, and a flood of made-up kids costs
one directory listing per second. The signing key itself changes only at restart, as
``keys rotate`` documents.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from authsvc.security.keys import KeySet, KeyStoreError, load_keys
from authsvc.security.tokens import (
    AccessTokenVerifier,
    TokenValidationError,
    verification_key_from_signing_key,
)

logger = logging.getLogger("authsvc")
LOCK_TIMEOUT = 2.0


class KeyRing:
    def __init__(
        self,
        key_set: KeySet,
        verifier: AccessTokenVerifier,
        keys_dir: Path | None,
        *,
        rescan_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key_set = key_set
        self.verifier = verifier
        # None for HS256: the secret comes from the settings, there is nothing to re-read.
        self._keys_dir = keys_dir
        self._rescan_interval = rescan_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last_scan = clock()
        self._listing = self._list()
        self._install(key_set)

    def _list(self) -> frozenset[str]:
        if self._keys_dir is None:
            return frozenset()
        try:
            return frozenset(path.name for path in self._keys_dir.glob("*.pem"))
        except OSError:
            return frozenset()

    def _install(self, key_set: KeySet) -> None:
        self.key_set = key_set
        self.verifier.keys = {
            key.kid: verification_key_from_signing_key(key) for key in key_set.keys
        }

    def rescan(self) -> bool:
        """Reload if the directory's key files changed; True when the keys changed.

        A caller that finds a rescan running waits for it (a directory listing and a few PEM
        files) and then, inside the interval, uses what it installed.
        """
        if self._keys_dir is None:
            return False
        if not self._lock.acquire(timeout=LOCK_TIMEOUT):
            return False
        try:
            now = self._clock()
            if now - self._last_scan < self._rescan_interval:
                return False
            self._last_scan = now
            listing = self._list()
            if listing == self._listing:
                return False
            try:
                keys = load_keys(self._keys_dir)
            except KeyStoreError as exc:
                # Keep verifying with what we have; a bad file is the operator's to fix.
                logger.warning("keys directory changed but could not be read: %s", exc)
                return False
            self._listing = listing
            self._install(KeySet(algorithm=self.key_set.algorithm, keys=tuple(keys)))
            logger.info("keys directory changed: now %d keys", len(keys))
            return True
        finally:
            self._lock.release()

    def verify(self, token: str) -> dict[str, Any]:
        """Verify; on an unknown kid, rescan the directory and try once more.

        The second try happens whether or not this call did the rescan: a concurrent caller
        may just have installed the key.
        """
        try:
            return self.verifier.verify(token)
        except TokenValidationError as exc:
            if exc.unknown_kid is None:
                raise
        self.rescan()
        return self.verifier.verify(token)

    async def verify_async(self, token: str) -> dict[str, Any]:
        """``verify`` for the event loop: the rescan (file IO, a lock) runs in a thread."""
        try:
            return self.verifier.verify(token)
        except TokenValidationError as exc:
            if exc.unknown_kid is None:
                raise
        return await run_in_threadpool(self.verify, token)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public keys of the configured algorithm only.

        A key file of another algorithm (left from before AUTHSVC_JWT_ALGORITHM changed)
        verifies nothing here, so publishing it would let a downstream guard accept tokens
        the gateway refuses.
        """
        self.rescan()
        return {
            "keys": [
                jwk
                for jwk in self.key_set.jwks()["keys"]
                if jwk.get("alg") in self.verifier.algorithms
            ]
        }
