"""Access tokens: the only module that imports python-jose.

Tokens follow RFC 9068 (JWT profile for OAuth 2.0 access tokens) and are verified per RFC 8725
(JWT best current practices). python-jose verifies the signature and the registered claims it
knows, but it accepts tokens without ``exp`` or ``aud`` unless told, never checks ``typ``,
``crit`` or duplicate claims, does not reject ``iat`` in the future, and raises ``TypeError``
on some malformed claim types. So :class:`AccessTokenVerifier` first checks the token's shape
and every claim's type without any crypto, then asks jose for the signature with every
``require_*`` option on, then checks what jose does not. One verifier serves the gateway and
:mod:`authsvc.guard`, so downstream services verify exactly as we do.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from jose import jwk, jwt
from jose.backends.base import Key as JoseKey
from jose.exceptions import ExpiredSignatureError, JOSEError

from authsvc.security.keys import SigningKey

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
MAX_TOKEN_BYTES = 8192
ALLOWED_HEADER_MEMBERS = frozenset({"alg", "kid", "typ"})
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_MAX_NUMERIC_DATE = 2**53  # beyond this a float loses whole seconds; no real token goes there


class TokenValidationError(Exception):
    """The token must be refused. ``expired`` and ``unknown_kid`` let callers react."""

    def __init__(self, reason: str, *, expired: bool = False, unknown_kid: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.expired = expired
        self.unknown_kid = unknown_kid


@dataclass(frozen=True)
class VerificationKey:
    kid: str
    algorithm: str
    key: JoseKey


def verification_key_from_jwk(jwk_dict: Mapping[str, Any], algorithm: str) -> VerificationKey:
    """Build a verification key from a published JWK (used by downstream guards)."""
    kid = jwk_dict.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ValueError("JWK without kid")
    try:
        key = jwk.construct(dict(jwk_dict), algorithm)
    except (JOSEError, TypeError, ValueError, KeyError) as exc:
        # jose raises TypeError for members of the wrong JSON type ("e": null and the like).
        raise ValueError(f"unusable JWK {kid}: {exc}") from None
    return VerificationKey(kid=kid, algorithm=algorithm, key=key)


def verification_key_from_signing_key(key: SigningKey) -> VerificationKey:
    material: Any = key.secret if key.secret is not None else key.public_key
    return VerificationKey(
        kid=key.kid, algorithm=key.algorithm, key=jwk.construct(material, key.algorithm)
    )


class AccessTokenSigner:
    """Signs with a key parsed once: jose re-parses PEM strings on every call (~100x slower)."""

    def __init__(self, key: SigningKey) -> None:
        material: Any = key.secret if key.secret is not None else key.private_key
        self.kid = key.kid
        self.algorithm = key.algorithm
        self._key = jwk.construct(material, key.algorithm)

    def sign(self, claims: Mapping[str, Any]) -> str:
        headers = {"kid": self.kid, "typ": ACCESS_TOKEN_TYPE}
        token: str = jwt.encode(dict(claims), self._key, algorithm=self.algorithm, headers=headers)
        return token


def build_access_token_claims(
    *,
    issuer: str,
    audience: str,
    subject: str,
    client_id: str,
    scopes: list[str],
    ttl: int,
    extra: Mapping[str, Any] | None = None,
    now: int | None = None,
) -> dict[str, Any]:
    """RFC 9068 §2.2 claims; ``scope`` is space-separated per RFC 8693 §4.2."""
    issued_at = int(time.time()) if now is None else now
    return {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": issued_at + ttl,
        "iat": issued_at,
        "nbf": issued_at,
        "jti": uuid.uuid4().hex,
        "client_id": client_id,
        "scope": " ".join(scopes),
        **(extra or {}),
    }


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            # RFC 7519 §4 and RFC 7515 §5.2: duplicate member names MUST be rejected (or take
            # the last one); parsers disagree, so an attacker could show two readers two tokens.
            raise ValueError(f"duplicate member {name!r}")
        result[name] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-JSON number {name}")


def _decode_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise TokenValidationError(f"malformed {what}: {exc}") from None
    if not isinstance(value, dict):
        raise TokenValidationError(f"{what} is not a JSON object")
    return value


def _copy_claims(claims: dict[str, Any]) -> dict[str, Any]:
    return {name: _copy(value) for name, value in claims.items()}


def _copy(value: Any) -> Any:
    """A copy down to the JSON leaves: callers may change what they get, not the cache."""
    if isinstance(value, dict):
        return {name: _copy(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None and name not in claims:
        return None
    # RFC 7519 §2 NumericDate: a JSON number. bool is an int subclass in Python; reject it, and
    # reject values a float cannot hold to the second (1e308 would never expire).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenValidationError(f"claim {name} is not a NumericDate")
    # The range check comes first: isfinite() overflows on a 400-digit int.
    if not 0 <= value < _MAX_NUMERIC_DATE or not math.isfinite(value):
        raise TokenValidationError(f"claim {name} is out of range")
    return float(value)


class AccessTokenVerifier:
    """Verifies access tokens against a fixed set of keys.

    Each key is bound to one algorithm (ours from the key file, a guard's from the JWK the
    issuer published), and a token's ``alg`` must be in ``algorithms`` *and* equal its key's:
    the token never picks how it is checked (RFC 8725 §3.1). ``keys`` may be replaced whole
    (the guard does so after a JWKS fetch); readers see the old or the new mapping, never a mix.

    Verified tokens are remembered (up to ``cache_size``, by their exact text) until they
    expire: a client sends the same token with every request for its whole lifetime, and the
    signature check is most of what a protected request costs. Only the time claims are
    checked again on a hit. Replacing ``keys`` forgets everything, so a withdrawn key stops
    verifying at once. Refusals are never remembered: made-up tokens cannot fill the cache.
    """

    def __init__(
        self,
        keys: Mapping[str, VerificationKey],
        *,
        algorithms: Collection[str],
        issuer: str,
        audience: str,
        leeway: int = 30,
        cache_size: int = 4096,
    ) -> None:
        self._keys: Mapping[str, VerificationKey] = dict(keys)
        self.algorithms = frozenset(algorithms)
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.cache_size = cache_size
        self._verified: dict[str, dict[str, Any]] = {}
        self._cache_lock = threading.Lock()

    @property
    def keys(self) -> Mapping[str, VerificationKey]:
        return self._keys

    @keys.setter
    def keys(self, keys: Mapping[str, VerificationKey]) -> None:
        with self._cache_lock:
            self._keys = keys
            self._verified = {}

    def parse_unverified(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Shape checks that need no crypto (RFC 8725 §3.1, §3.11); returns header and claims."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
            raise TokenValidationError("token too large")
        segments = token.split(".")
        if len(segments) != 3:
            raise TokenValidationError("a JWS in compact form has three segments")
        if not all(_SEGMENT.fullmatch(segment) for segment in segments):
            raise TokenValidationError("segments must be non-empty unpadded base64url")
        header = _decode_segment(segments[0], "header")
        extra = set(header) - ALLOWED_HEADER_MEMBERS
        if extra:
            # Refuses crit, jku, x5u, jwk, x5c, cty, zip, enc: nothing in a token chooses a key.
            raise TokenValidationError(f"unexpected header members: {sorted(extra)}")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise TokenValidationError("unexpected alg")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in (
            ACCESS_TOKEN_TYPE,
            "application/" + ACCESS_TOKEN_TYPE,
        ):
            raise TokenValidationError("typ must be at+jwt (RFC 9068 §2.1)")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise TokenValidationError("missing kid")
        claims = _decode_segment(segments[1], "payload")
        self._check_claim_types(claims)
        return header, claims

    def _check_claim_types(self, claims: Mapping[str, Any]) -> None:
        for name in REQUIRED_CLAIMS:
            if name not in claims:
                raise TokenValidationError(f"missing claim {name}")
        for name in ("iss", "sub", "jti"):
            if not isinstance(claims[name], str) or not claims[name]:
                raise TokenValidationError(f"claim {name} must be a non-empty string")
        aud = claims["aud"]
        if not (
            isinstance(aud, str) or (isinstance(aud, list) and all(isinstance(a, str) for a in aud))
        ):
            raise TokenValidationError("claim aud must be a string or a list of strings")
        for name in ("exp", "iat", "nbf"):
            _numeric_date(claims, name)
        for name in ("scope", "client_id"):
            if name in claims and not isinstance(claims[name], str):
                raise TokenValidationError(f"claim {name} must be a string")

    def verify(self, token: str, *, now: float | None = None) -> dict[str, Any]:
        current = time.time() if now is None else now
        cached = self._verified.get(token)
        if cached is not None and self._times_hold(cached, current):
            return _copy_claims(cached)
        # The keys it is verified with: if they are replaced meanwhile, it is not remembered.
        keys = self._keys
        verified = self._verify(token, current, keys)
        self._remember(token, verified, keys)
        return _copy_claims(verified)

    def _times_hold(self, claims: Mapping[str, Any], current: float) -> bool:
        # The same tests jose and _verify apply, so a hit and a miss agree on every instant;
        # when one fails, the full path runs and says why.
        leeway = self.leeway
        nbf = claims.get("nbf")
        return (
            claims["exp"] >= current - leeway
            and claims["iat"] <= current + leeway
            and (nbf is None or nbf <= current + leeway)
        )

    def _remember(
        self, token: str, claims: dict[str, Any], keys: Mapping[str, VerificationKey]
    ) -> None:
        if self.cache_size <= 0:
            return
        with self._cache_lock:
            if keys is not self._keys:
                return  # verified with keys replaced meanwhile: do not outlive them
            verified = self._verified
            if len(verified) >= self.cache_size:
                # Oldest first (dicts keep insertion order); the oldest expire soonest.
                del verified[next(iter(verified))]
            verified[token] = claims

    def _verify(
        self, token: str, current: float, keys: Mapping[str, VerificationKey]
    ) -> dict[str, Any]:
        header, _ = self.parse_unverified(token)
        kid = header["kid"]
        # kid is only ever a dictionary key into our own key set: never a path or a query.
        key = keys.get(kid)
        if key is None:
            raise TokenValidationError("unknown kid", unknown_kid=kid)
        if key.algorithm != header["alg"]:
            raise TokenValidationError("key algorithm mismatch")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "verify_signature": True,
                    "verify_aud": True,
                    "verify_iat": True,
                    "verify_exp": True,
                    "verify_nbf": True,
                    "verify_iss": True,
                    "verify_sub": True,
                    "verify_jti": True,
                    "verify_at_hash": False,
                    "require_aud": True,
                    "require_iat": True,
                    "require_exp": True,
                    "require_nbf": False,
                    "require_iss": True,
                    "require_sub": True,
                    "require_jti": True,
                    "require_at_hash": False,
                    "leeway": self.leeway,
                },
            )
        except ExpiredSignatureError:
            raise TokenValidationError("token expired", expired=True) from None
        except JOSEError as exc:
            raise TokenValidationError(str(exc) or type(exc).__name__) from None
        iat = _numeric_date(claims, "iat")
        if iat is not None and iat > current + self.leeway:
            raise TokenValidationError("token issued in the future")
        return claims
