"""Signing keys on disk: thumbprints, generation, rotation, loading and the published JWKS."""

from __future__ import annotations

import base64
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authsvc.security.keys import (
    KeyLoadError,
    KeySet,
    NoSigningKeyError,
    SigningKey,
    build_key_set,
    ensure_signing_key,
    generate_private_key,
    load_key_file,
    load_keys,
    public_jwk,
    rotate_key,
    thumbprint,
)

# RFC 7638 §3.1: the RSA key of RFC 7517 Appendix A.1 and its SHA-256 JWK thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
    "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FD"
    "W2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQ"
    "Fh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_E = "AQAB"
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
PUBLIC_JWK_MEMBERS = {"kty", "n", "e", "crv", "x", "y", "kid", "alg", "use"}
HMAC_SECRET = b"0123456789abcdef0123456789abcdef"


def b64url_to_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def write_pem(path: Path, private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture(scope="module")
def rsa_private_key() -> rsa.RSAPrivateKey:
    key = generate_private_key("RS256")
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


# --- thumbprints -------------------------------------------------------------------------


def test_thumbprint_matches_rfc7638_example() -> None:
    jwk = {"kty": "RSA", "n": RFC7638_N, "e": RFC7638_E, "alg": "RS256", "kid": "2011-04-29"}

    assert thumbprint(jwk) == RFC7638_THUMBPRINT


def test_public_jwk_of_rfc7638_key_has_the_rfc_members_and_thumbprint() -> None:
    public_key = rsa.RSAPublicNumbers(
        b64url_to_int(RFC7638_E), b64url_to_int(RFC7638_N)
    ).public_key()

    jwk = public_jwk(public_key)

    assert jwk == {"e": RFC7638_E, "kty": "RSA", "n": RFC7638_N}
    assert thumbprint(jwk) == RFC7638_THUMBPRINT


def test_thumbprint_of_ec_key_uses_only_required_members() -> None:
    jwk = public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())

    with_extras = {**jwk, "kid": "k1", "alg": "ES256", "use": "sig"}

    assert thumbprint(with_extras) == thumbprint(jwk)


def test_loaded_key_kid_is_its_thumbprint(
    tmp_path: Path, rsa_private_key: rsa.RSAPrivateKey
) -> None:
    path = tmp_path / "key.pem"
    write_pem(path, rsa_private_key)

    key = load_key_file(path)

    assert key.kid == thumbprint(public_jwk(rsa_private_key.public_key()))


# --- ensure_signing_key ------------------------------------------------------------------


def test_ensure_signing_key_on_empty_dir_creates_one_0600_key(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"

    key, created = ensure_signing_key(keys_dir, "ES256")

    assert created is True
    [path] = keys_dir.glob("*.pem")
    assert key.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert path.name.endswith(f"-{key.kid}.pem")


def test_ensure_signing_key_twice_returns_the_same_key(tmp_path: Path) -> None:
    first, _ = ensure_signing_key(tmp_path, "ES256")

    second, created = ensure_signing_key(tmp_path, "ES256")

    assert created is False
    assert second.kid == first.kid
    assert len(list(tmp_path.glob("*.pem"))) == 1


def test_ensure_signing_key_for_es256_creates_p256_key(tmp_path: Path) -> None:
    key, _ = ensure_signing_key(tmp_path, "ES256")

    assert key.algorithm == "ES256"
    assert isinstance(key.private_key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.private_key.curve, ec.SECP256R1)


def test_ensure_signing_key_ignores_keys_of_another_algorithm(tmp_path: Path) -> None:
    ec_key, _ = ensure_signing_key(tmp_path, "ES256")

    rsa_key, created = ensure_signing_key(tmp_path, "RS256")

    assert created is True
    assert rsa_key.algorithm == "RS256"
    assert {key.kid for key in load_keys(tmp_path)} == {ec_key.kid, rsa_key.kid}


def test_ensure_signing_key_from_concurrent_threads_creates_one_key(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    workers = 8
    barrier = threading.Barrier(workers)
    results: list[tuple[SigningKey, bool]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(ensure_signing_key(keys_dir, "RS256"))
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert len(list(keys_dir.glob("*.pem"))) == 1
    assert len({key.kid for key, _ in results}) == 1
    assert sum(created for _, created in results) == 1


def test_ensure_signing_key_from_concurrent_processes_creates_one_key(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from authsvc.security.keys import ensure_signing_key\n"
        "key, created = ensure_signing_key(Path(sys.argv[1]), 'RS256')\n"
        "print(key.kid, created)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(keys_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        outputs.append(stdout.split())

    assert len(list(keys_dir.glob("*.pem"))) == 1
    assert len({kid for kid, _ in outputs}) == 1
    assert [created for _, created in outputs].count("True") == 1


# --- rotation and the key set ------------------------------------------------------------


def test_rotated_key_becomes_active(tmp_path: Path) -> None:
    ensure_signing_key(tmp_path, "ES256")

    new = rotate_key(tmp_path, "ES256")

    assert build_key_set(tmp_path, "ES256").active.kid == new.kid


def test_rotation_keeps_older_keys_in_the_jwks(tmp_path: Path) -> None:
    first, _ = ensure_signing_key(tmp_path, "ES256")
    second = rotate_key(tmp_path, "ES256")
    third = rotate_key(tmp_path, "ES256")

    jwks = build_key_set(tmp_path, "ES256").jwks()

    assert [jwk["kid"] for jwk in jwks["keys"]] == [third.kid, second.kid, first.kid]


def test_load_keys_orders_newest_first_by_file_name_stamp(
    tmp_path: Path, rsa_private_key: rsa.RSAPrivateKey
) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    write_pem(tmp_path / "20260101T000000000000Z-old.pem", other)
    write_pem(tmp_path / "20260202T000000000000Z-new.pem", rsa_private_key)

    keys = load_keys(tmp_path)

    assert [key.algorithm for key in keys] == ["RS256", "ES256"]


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_jwks_has_only_public_members(
    tmp_path: Path,
    algorithm: str,
    rsa_private_key: rsa.RSAPrivateKey,
) -> None:
    write_pem(tmp_path / "20260101T000000000000Z-rsa.pem", rsa_private_key)
    write_pem(tmp_path / "20260101T000000000001Z-ec.pem", ec.generate_private_key(ec.SECP256R1()))

    jwks = build_key_set(tmp_path, algorithm, generate=False).jwks()

    assert len(jwks["keys"]) == 2
    for jwk in jwks["keys"]:
        assert set(jwk) <= PUBLIC_JWK_MEMBERS
        assert not PRIVATE_JWK_MEMBERS & set(jwk)
        assert jwk["use"] == "sig"


def test_jwks_members_match_the_key_type(tmp_path: Path) -> None:
    key, _ = ensure_signing_key(tmp_path, "ES256")

    [jwk] = build_key_set(tmp_path, "ES256").jwks()["keys"]

    assert key.public_key is not None
    assert jwk == {**public_jwk(key.public_key), "kid": key.kid, "alg": "ES256", "use": "sig"}
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}


def test_hs256_key_set_publishes_no_keys(tmp_path: Path) -> None:
    key_set = build_key_set(tmp_path / "keys", "HS256", HMAC_SECRET)

    assert key_set.jwks() == {"keys": []}
    assert key_set.active.algorithm == "HS256"
    assert not (tmp_path / "keys").exists()


def test_hs256_kid_does_not_contain_the_secret() -> None:
    key_set = build_key_set(Path("unused"), "HS256", HMAC_SECRET)

    assert HMAC_SECRET.decode() not in key_set.active.kid


def test_hs256_key_set_without_secret_raises_no_signing_key() -> None:
    with pytest.raises(NoSigningKeyError):
        build_key_set(Path("unused"), "HS256", None)


def test_key_set_without_key_of_configured_algorithm_has_no_active_key(tmp_path: Path) -> None:
    ensure_signing_key(tmp_path, "ES256")

    with pytest.raises(NoSigningKeyError):
        build_key_set(tmp_path, "RS256", generate=False)


def test_key_set_active_key_is_newest_of_configured_algorithm(tmp_path: Path) -> None:
    rsa_key, _ = ensure_signing_key(tmp_path, "RS256")
    ensure_signing_key(tmp_path, "ES256")

    key_set = KeySet(algorithm="RS256", keys=tuple(load_keys(tmp_path)))

    assert key_set.active.kid == rsa_key.kid


# --- files that are not usable keys ------------------------------------------------------


def public_key_pem(private_key: rsa.RSAPrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def encrypted_pem(private_key: rsa.RSAPrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )


NON_KEY_CONTENTS: list[tuple[str, Callable[[rsa.RSAPrivateKey], bytes]]] = [
    ("text", lambda _key: b"not a key\n"),
    ("empty", lambda _key: b""),
    ("public-key", public_key_pem),
    ("encrypted-private-key", encrypted_pem),
]


@pytest.mark.parametrize(
    "make_content", [pytest.param(make, id=name) for name, make in NON_KEY_CONTENTS]
)
def test_non_key_pem_file_raises_key_load_error(
    tmp_path: Path,
    rsa_private_key: rsa.RSAPrivateKey,
    make_content: Callable[[rsa.RSAPrivateKey], bytes],
) -> None:
    (tmp_path / "notes.pem").write_bytes(make_content(rsa_private_key))

    with pytest.raises(KeyLoadError, match=r"notes\.pem"):
        load_keys(tmp_path)


def test_key_on_unsupported_curve_raises_key_load_error(tmp_path: Path) -> None:
    write_pem(tmp_path / "p384.pem", ec.generate_private_key(ec.SECP384R1()))

    with pytest.raises(KeyLoadError, match="P-256"):
        load_keys(tmp_path)


def test_files_without_pem_suffix_are_ignored(
    tmp_path: Path, rsa_private_key: rsa.RSAPrivateKey
) -> None:
    write_pem(tmp_path / "key.pem", rsa_private_key)
    (tmp_path / "README").write_text("keys live here\n", encoding="utf-8")
    (tmp_path / "key.pem.bak").write_text("garbage\n", encoding="utf-8")

    assert len(load_keys(tmp_path)) == 1


def test_load_keys_of_missing_directory_is_empty(tmp_path: Path) -> None:
    assert load_keys(tmp_path / "missing") == []
