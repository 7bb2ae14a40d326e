"""Signing keys: load, generate and rotate the keys in ``KEYS_DIR``; publish the JWKS.

Each private key is a PKCS#8 PEM file named ``<created>-<kid>.pem`` with mode 0600. The newest
key of the configured algorithm signs; every key in the directory is published so tokens signed
before a rotation keep verifying until the file is removed. Replicas share keys by mounting the
same directory; generation takes a file lock so several workers starting at once create one key.
"""

from __future__ import annotations

import base64
import fcntl
import functools
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

ASYMMETRIC_ALGORITHMS = ("RS256", "ES256")
RSA_KEY_SIZE = 2048
_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class KeyStoreError(Exception):
    """Base for problems with the keys directory."""


class KeyLoadError(KeyStoreError):
    """A file in the keys directory is not a key we can use."""


class NoSigningKeyError(KeyStoreError):
    """There is no key to sign with for the configured algorithm."""


def b64url_uint(value: int) -> str:
    length = max(1, (value.bit_length() + 7) // 8)
    return b64url(value.to_bytes(length, "big"))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(public_key: PublicKey) -> dict[str, str]:
    """The public members only (RFC 7517 §4, RFC 7518 §6), in RFC 7638 member order."""
    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        return {"e": b64url_uint(numbers.e), "kty": "RSA", "n": b64url_uint(numbers.n)}
    if isinstance(public_key.curve, ec.SECP256R1):
        point = public_key.public_numbers()
        return {
            "crv": "P-256",
            "kty": "EC",
            "x": b64url(point.x.to_bytes(32, "big")),
            "y": b64url(point.y.to_bytes(32, "big")),
        }
    raise KeyLoadError(f"unsupported elliptic curve {public_key.curve.name}")


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, without whitespace."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def _algorithm_for(private_key: PrivateKey) -> str:
    return "RS256" if isinstance(private_key, rsa.RSAPrivateKey) else "ES256"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    created: datetime
    private_key: PrivateKey | None = None
    secret: bytes | None = None
    path: Path | None = None

    @property
    def public_key(self) -> PublicKey | None:
        return self.private_key.public_key() if self.private_key is not None else None

    def public_jwk(self) -> dict[str, str] | None:
        public_key = self.public_key
        if public_key is None:
            return None
        return {**public_jwk(public_key), "kid": self.kid, "alg": self.algorithm, "use": "sig"}


@dataclass(frozen=True)
class KeySet:
    """The keys we verify with, newest first, and the one we sign with."""

    algorithm: str
    keys: tuple[SigningKey, ...]

    @property
    def active(self) -> SigningKey:
        for key in self.keys:
            if key.algorithm == self.algorithm:
                return key
        raise NoSigningKeyError(f"no {self.algorithm} signing key")

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """RFC 7517 §5 JWK Set with public members only; HS256 publishes nothing."""
        return {"keys": [jwk for key in self.keys if (jwk := key.public_jwk()) is not None]}


def hmac_key(secret: bytes) -> SigningKey:
    # A kid derived through HMAC names the secret without revealing a hash of it.
    kid = b64url(hmac.new(secret, b"authsvc key id", hashlib.sha256).digest()[:12])
    return SigningKey(kid=kid, algorithm="HS256", created=datetime.now(UTC), secret=secret)


def _parse_created(path: Path) -> datetime:
    stamp = path.name.split("-", 1)[0]
    try:
        return datetime.strptime(stamp, _TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)


@functools.lru_cache(maxsize=16)
def _parse_private_key(data: bytes) -> PrivateKeyTypes:
    """Parsed once per process for the same file contents.

    Loading an RSA key checks its consistency, about 70 ms here; the CLI, the app and the key
    ring's rescans would otherwise repeat it for the same file, and startup paid it twice.
    """
    return serialization.load_pem_private_key(data, password=None)


def load_key_file(path: Path) -> SigningKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyLoadError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        private_key = _parse_private_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyLoadError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyLoadError(f"{path}: unsupported key type {type(private_key).__name__}")
    if isinstance(private_key, ec.EllipticCurvePrivateKey) and not isinstance(
        private_key.curve, ec.SECP256R1
    ):
        raise KeyLoadError(f"{path}: only P-256 elliptic curve keys are supported")
    jwk = public_jwk(private_key.public_key())
    return SigningKey(
        kid=thumbprint(jwk),
        algorithm=_algorithm_for(private_key),
        created=_parse_created(path),
        private_key=private_key,
        path=path,
    )


def load_keys(keys_dir: Path) -> list[SigningKey]:
    """All private keys in the directory, newest first; a file we cannot use is an error."""
    if not keys_dir.is_dir():
        return []
    keys = [load_key_file(path) for path in sorted(keys_dir.glob("*.pem"))]
    keys.sort(key=lambda key: key.created, reverse=True)
    return keys


def generate_private_key(algorithm: str) -> PrivateKey:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"cannot generate a key file for {algorithm}")


def _write_private_key(keys_dir: Path, private_key: PrivateKey) -> Path:
    kid = thumbprint(public_jwk(private_key.public_key()))
    stamp = datetime.now(UTC).strftime(_TIMESTAMP_FORMAT)
    path = keys_dir / f"{stamp}-{kid}.pem"
    partial = keys_dir / f".{stamp}-{kid}.partial"
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        # Mode 0600 from the first byte, so the key is never readable by others even briefly;
        # written under another name and renamed, so a reader (another replica starting, or
        # this process after a crash) never sees half a key.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(partial, path)
    except OSError as exc:
        raise KeyStoreError(f"{keys_dir}: cannot write a key ({exc.strerror})") from None
    return path


@contextmanager
def _locked(keys_dir: Path) -> Iterator[None]:
    try:
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(keys_dir / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError as exc:
        raise KeyStoreError(f"{keys_dir}: cannot use keys directory ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def rotate_key(keys_dir: Path, algorithm: str) -> SigningKey:
    """Add a new key that becomes the signing key; older keys stay for verification."""
    with _locked(keys_dir):
        path = _write_private_key(keys_dir, generate_private_key(algorithm))
    return load_key_file(path)


def ensure_signing_key(keys_dir: Path, algorithm: str) -> tuple[SigningKey, bool]:
    """Return the active key for ``algorithm``, generating one if there is none.

    The second item tells whether a key was generated.
    """
    with _locked(keys_dir):
        for key in load_keys(keys_dir):
            if key.algorithm == algorithm:
                return key, False
        path = _write_private_key(keys_dir, generate_private_key(algorithm))
    return load_key_file(path), True


def build_key_set(
    keys_dir: Path, algorithm: str, secret: bytes | None = None, *, generate: bool = True
) -> KeySet:
    if algorithm == "HS256":
        if not secret:
            raise NoSigningKeyError("HS256 needs AUTHSVC_JWT_SECRET")
        return KeySet(algorithm=algorithm, keys=(hmac_key(secret),))
    if generate:
        ensure_signing_key(keys_dir, algorithm)
    keys = tuple(load_keys(keys_dir))
    key_set = KeySet(algorithm=algorithm, keys=keys)
    key_set.active  # noqa: B018 - raises NoSigningKeyError early when there is none
    return key_set


def iter_key_summaries(key_set: KeySet) -> Iterator[dict[str, Any]]:
    try:
        active_kid: str | None = key_set.active.kid
    except NoSigningKeyError:
        active_kid = None
    for key in key_set.keys:
        yield {
            "kid": key.kid,
            "alg": key.algorithm,
            "created": key.created.isoformat(),
            "active": key.kid == active_kid,
            "path": str(key.path) if key.path else None,
        }
