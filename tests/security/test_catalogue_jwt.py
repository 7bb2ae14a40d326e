"""The JWT rows (J01-J16) of the security catalogue, each against ``GET /users/me``.

Every row presents a forged, tampered or malformed access token and expects the RFC 6750
``invalid_token`` refusal: status 401, the exact JSON body and the matching ``Bearer``
challenge (``assert_invalid_token``), never a 500. Tokens are built here from raw JSON text
and signed with the app's own key or an attacker's, so nothing in authsvc helps build what it
is then asked to refuse; ``test_access_token_attacks.py`` holds the positive control that a
token forged the same way is accepted.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import select
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from authsvc.security.keys import SigningKey
from tests.helpers import (
    EXPIRED_TOKEN,
    INVALID_TOKEN,
    Forger,
    access_token_for,
    assert_invalid_token,
    b64url,
    b64url_decode,
    bearer,
    encode_segment,
    rs256_sign,
)

LEEWAY = 30  # the verifier's default clock skew allowance, in seconds


def _me(client: TestClient, token: str) -> Any:
    return client.get("/users/me", headers=bearer(token))


@pytest.fixture
def get_me(client: TestClient) -> Callable[[str], Any]:
    def call(token: str) -> Any:
        return _me(client, token)

    return call


@pytest.fixture
def issued_token(client: TestClient, user: dict[str, Any]) -> str:
    """A token the token endpoint issued to ``user``, to be tampered with."""
    return access_token_for(client, user)


@pytest.fixture(scope="module")
def attacker_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _rsa_jwk(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    """An RSA public JWK built by hand, with its RFC 7638 thumbprint as ``kid``."""
    numbers = public_key.public_numbers()

    def uint(value: int) -> str:
        return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    members = {"e": uint(numbers.e), "kty": "RSA", "n": uint(numbers.n)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("ascii")
    return {**members, "kid": b64url(hashlib.sha256(canonical).digest())}


def _hs256_token(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = encode_segment(header) + "." + encode_segment(claims)
    signature = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


# --- J01: alg none ---------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_j01_alg_none_in_any_spelling_with_empty_signature_is_rejected(
    alg: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    """J01: ``alg`` none, None, NONE, nOnE, empty signature -> 401 invalid_token."""
    token = encode_segment(forger.header(alg=alg)) + "." + encode_segment(forger.claims()) + "."
    assert_invalid_token(get_me(token), INVALID_TOKEN)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_j01_alg_none_with_a_valid_rs256_signature_is_rejected(
    alg: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    """J01: ``alg`` none carrying a signature our key really made is still refused."""
    assert_invalid_token(get_me(forger.token(header=forger.header(alg=alg))), INVALID_TOKEN)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_j01_alg_none_is_rejected_by_an_hs256_app(
    alg: str, hs256_client: TestClient, hs256_token: str
) -> None:
    """J01 on an app configured for HS256: the header of an issued token, ``alg`` none."""
    header = jwt.get_unverified_header(hs256_token) | {"alg": alg}
    token = encode_segment(header) + "." + hs256_token.split(".")[1] + "."
    assert_invalid_token(_me(hs256_client, token), INVALID_TOKEN)


# --- J02: HS256 keyed with our public key ----------------------------------------------------

_PUBLIC_KEY_FORMS = {
    "spki-pem": (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    "pkcs1-pem": (serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
    "spki-der": (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    "openssh": (serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH),
}


@pytest.mark.parametrize("form", list(_PUBLIC_KEY_FORMS))
def test_j02_hs256_keyed_with_our_public_key_is_rejected(
    form: str, forger: Forger, signing_key: SigningKey, get_me: Callable[[str], Any]
) -> None:
    """J02: HS256 keyed with our public key as SPKI PEM, PKCS#1 PEM, DER, OpenSSH -> 401."""
    private_key = signing_key.private_key
    assert isinstance(private_key, rsa.RSAPrivateKey)
    encoding, public_format = _PUBLIC_KEY_FORMS[form]
    secret = private_key.public_key().public_bytes(encoding, public_format)
    header = {"alg": "HS256", "kid": signing_key.kid, "typ": "at+jwt"}
    assert_invalid_token(get_me(_hs256_token(header, forger.claims(), secret)), INVALID_TOKEN)


# --- J03-J04: integrity ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"scope": "admin"}, id="scope"),
        pytest.param({"sub": str(uuid.uuid4())}, id="sub"),
        pytest.param({"exp": int(time.time()) + 86400 * 365}, id="exp"),
    ],
)
def test_j03_tampered_payload_is_rejected(
    change: dict[str, Any], issued_token: str, get_me: Callable[[str], Any]
) -> None:
    """J03: an issued token whose payload was changed after signing -> 401."""
    assert get_me(issued_token).status_code == 200
    header, payload, signature = issued_token.split(".")
    claims = json.loads(b64url_decode(payload)) | change
    assert_invalid_token(get_me(f"{header}.{encode_segment(claims)}.{signature}"), INVALID_TOKEN)


def test_j03_tampered_payload_is_rejected_by_an_es256_app(
    es256_client: TestClient, es256_token: str
) -> None:
    """J03 on an app configured for ES256."""
    header, payload, signature = es256_token.split(".")
    claims = json.loads(b64url_decode(payload)) | {"scope": "admin"}
    token = f"{header}.{encode_segment(claims)}.{signature}"
    assert_invalid_token(_me(es256_client, token), INVALID_TOKEN)


def _flip_middle_bit(signature: str) -> str:
    flipped = bytearray(b64url_decode(signature))
    flipped[len(flipped) // 2] ^= 0x01
    return b64url(bytes(flipped))


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s, i: f"{s}.{_flip_middle_bit(i)}", id="flipped-bit"),
        pytest.param(lambda s, i: f"{s}.{b64url(b64url_decode(i)[:-1])}", id="truncated"),
        pytest.param(lambda s, i: f"{s}.", id="empty"),
        pytest.param(lambda s, i: s, id="missing"),
    ],
)
def test_j04_flipped_empty_or_missing_signature_is_rejected(
    mangle: Callable[[str, str], str], issued_token: str, get_me: Callable[[str], Any]
) -> None:
    """J04: an issued token with a flipped, empty or missing signature -> 401."""
    assert get_me(issued_token).status_code == 200
    signing_input, signature = issued_token.rsplit(".", 1)
    assert_invalid_token(get_me(mangle(signing_input, signature)), INVALID_TOKEN)


# --- J05-J07: time claims, issuer and audience, exp itself -----------------------------------


@pytest.mark.parametrize(
    ("expired_ago", "issued_ago"),
    [
        pytest.param(3600, 7200, id="an-hour-ago"),
        pytest.param(LEEWAY + 10, 600, id="just-beyond-leeway"),
    ],
)
def test_j05_expired_token_is_rejected_as_expired(
    expired_ago: int, issued_ago: int, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    """J05: expired (beyond the leeway) -> 401 invalid_token, described as expired."""
    now = int(time.time())
    payload = forger.claims(exp=now - expired_ago, iat=now - issued_ago, nbf=now - issued_ago)
    assert_invalid_token(get_me(forger.token(payload=payload)), EXPIRED_TOKEN)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
@pytest.mark.parametrize("ahead", [pytest.param(LEEWAY + 30, id="a-minute"), 86400])
def test_j05_nbf_or_iat_in_the_future_beyond_leeway_is_rejected(
    claim: str, ahead: int, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    """J05: ``nbf`` or ``iat`` in the future beyond the leeway -> 401."""
    now = int(time.time())
    payload = forger.claims(nbf=now, iat=now, exp=now + ahead + 900) | {claim: now + ahead}
    assert_invalid_token(get_me(forger.token(payload=payload)), INVALID_TOKEN)


@pytest.mark.parametrize(
    ("overrides", "drop"),
    [
        pytest.param({"iss": "https://evil.example"}, (), id="wrong-issuer"),
        pytest.param({"iss": "http://testserver/"}, (), id="issuer-with-trailing-slash"),
        pytest.param({"aud": "some-other-api"}, (), id="wrong-audience"),
        pytest.param({"aud": ["some-other-api", "another"]}, (), id="audience-list-without-ours"),
        pytest.param({}, ("aud",), id="missing-audience"),
    ],
)
def test_j06_wrong_issuer_or_wrong_or_missing_audience_is_rejected(
    overrides: dict[str, Any], drop: tuple[str, ...], forger: Forger, get_me: Callable[[str], Any]
) -> None:
    """J06: wrong ``iss``; wrong or missing ``aud`` -> 401."""
    token = forger.token(payload=forger.claims(drop=drop, **overrides))
    assert_invalid_token(get_me(token), INVALID_TOKEN)


def test_j07_missing_exp_is_rejected(forger: Forger, get_me: Callable[[str], Any]) -> None:
    """J07: missing ``exp`` -> 401."""
    assert_invalid_token(get_me(forger.token(payload=forger.claims(drop=("exp",)))), INVALID_TOKEN)


@pytest.mark.parametrize(
    "json_text",
    [
        pytest.param('"9999999999"', id="string"),
        pytest.param("1e308", id="1e308"),
        pytest.param("null", id="null"),
        pytest.param("true", id="boolean"),
        pytest.param("NaN", id="nan"),
        pytest.param("Infinity", id="infinity"),
        pytest.param("-1", id="negative"),
        pytest.param(str(2**53), id="2**53"),
        pytest.param("[9999999999]", id="array"),
    ],
)
def test_j07_exp_that_is_not_a_valid_numeric_date_is_rejected(
    json_text: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    """J07: ``exp`` as a string, 1e308 or null (and other non-NumericDates) -> 401."""
    assert_invalid_token(get_me(forger.with_claim_text("exp", json_text)), INVALID_TOKEN)


# --- J08-J09: kid ----------------------------------------------------------------------------


def test_j08_unknown_kid_is_rejected(
    forger: Forger, attacker_key: rsa.RSAPrivateKey, get_me: Callable[[str], Any]
) -> None:
    """J08: a ``kid`` naming no key of ours -> 401 (made-up, and an attacker key's own)."""
    token = forger.token(header=forger.header(kid="no-such-key"))
    assert_invalid_token(get_me(token), INVALID_TOKEN)
    attacker_kid = _rsa_jwk(attacker_key.public_key())["kid"]
    token = forger.token(header=forger.header(kid=attacker_kid), private_key=attacker_key)
    assert_invalid_token(get_me(token), INVALID_TOKEN)


@pytest.fixture
def executed_sql() -> Iterator[list[str]]:
    """The text and parameters of every SQL statement any engine runs during the test."""
    statements: list[str] = []

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: Any
    ) -> None:
        statements.append(f"{statement} {parameters!r}")

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", record)


_KEY_FILE = "20260101T000000000000Z-test.pem"  # the file name conftest's keys_dir gives our key


@pytest.mark.parametrize(
    ("kid", "alg", "secret"),
    [
        pytest.param("../../dev/null", "RS256", None, id="dev-null"),
        pytest.param("../../dev/null", "HS256", b"", id="dev-null-hs256-empty-key"),
        pytest.param("/dev/null", "HS256", b"", id="absolute-dev-null-hs256-empty-key"),
        pytest.param(f"../keys/{_KEY_FILE}", "RS256", None, id="our-key-file-via-parent"),
        pytest.param(f"keys/{_KEY_FILE}", "RS256", None, id="our-key-file-from-cwd"),
        pytest.param(_KEY_FILE, "RS256", None, id="our-key-file-name"),
        pytest.param(f"{{keys_dir}}/{_KEY_FILE}", "RS256", None, id="our-key-file-absolute"),
        pytest.param("x' UNION SELECT 'secret' --", "HS256", b"secret", id="sql-union-hs256"),
        pytest.param("x' UNION SELECT 'secret' --", "RS256", None, id="sql-union"),
        pytest.param("'; DROP TABLE users; --", "RS256", None, id="sql-drop-table"),
        pytest.param("' OR '1'='1", "RS256", None, id="sql-or-true"),
    ],
)
def test_j09_kid_of_a_path_or_sql_text_is_only_a_dictionary_key(
    kid: str,
    alg: str,
    secret: bytes | None,
    forger: Forger,
    keys_dir: Path,
    executed_sql: list[str],
    get_me: Callable[[str], Any],
) -> None:
    """J09: ``kid`` of ``../../dev/null`` or SQL text -> 401; kid is only a dictionary key.

    The path cases name files that exist (``/dev/null``, our own key file, signed with that
    very key): a kid read as a path would verify them. No SQL statement carries the kid, and
    the users table is still there afterwards.
    """
    assert (keys_dir / _KEY_FILE).is_file()
    kid = kid.replace("{keys_dir}", str(keys_dir))
    header = forger.header(alg=alg, kid=kid)
    if secret is None:
        token = forger.token(header=header)
    else:
        token = _hs256_token(header, forger.claims(), secret)
    assert_invalid_token(get_me(token), INVALID_TOKEN)
    assert not [statement for statement in executed_sql if kid in statement]
    # The control: the same app still serves a valid token, which takes SQL the recorder sees.
    executed_sql.clear()
    assert get_me(forger.token()).status_code == 200
    assert any("users" in statement for statement in executed_sql)


# --- J10: key-carrying and key-locating headers ----------------------------------------------


class _RecordingServer(ThreadingHTTPServer):
    """Counts every connection it accepts and every path requested of it."""

    def __init__(self, routes: dict[str, bytes]) -> None:
        self.routes = routes
        self.connections = 0
        self.paths: list[str] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _RecordingHandler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self.lock:
            self.connections += 1
        return True

    def url(self, path: str) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{path}"


class _RecordingHandler(BaseHTTPRequestHandler):
    server: _RecordingServer

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.paths.append(self.path)
        body = self.server.routes.get(self.path, b"")
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[_RecordingServer]:
    """A local HTTP server that records hits; proven to record one before the test runs."""
    server = _RecordingServer({})
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with pytest.raises(urllib.error.HTTPError):  # 404: nothing is served yet
            opener.open(server.url("/control"), timeout=5)
        assert server.connections == 1
        assert server.paths == ["/control"]
        server.connections = 0
        server.paths.clear()
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


def _assert_untouched(server: _RecordingServer) -> None:
    """No request was made of ``server``, and no connection is waiting to be accepted."""
    server.shutdown()  # stops the accept loop; the listening socket stays open
    pending, _, _ = select.select([server.socket], [], [], 0.2)
    assert pending == [], "a connection to the attacker's server is waiting in its backlog"
    assert server.connections == 0
    assert server.paths == []


def _self_signed_certificate(key: rsa.RSAPrivateKey, ca_issuers_url: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    now = datetime.datetime.now(datetime.UTC)
    access = x509.AccessDescription(
        AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(ca_issuers_url)
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.AuthorityInformationAccess([access]), critical=False)
        .sign(key, hashes.SHA256())
    )


@pytest.mark.parametrize(
    "signer", ["attacker-key-and-kid", "attacker-key-under-our-kid", "our-key-and-kid"]
)
@pytest.mark.parametrize("member", ["jku", "x5u", "jwk", "x5c"])
def test_j10_key_locating_or_key_carrying_header_is_rejected_without_outbound_request(
    member: str,
    signer: str,
    forger: Forger,
    attacker_key: rsa.RSAPrivateKey,
    recorder: _RecordingServer,
    get_me: Callable[[str], Any],
) -> None:
    """J10: ``jku``, ``x5u``, ``jwk``, ``x5c`` pointing at or carrying another key -> 401, and
    no outbound request.

    ``jku`` and ``x5u`` point at a local server that serves the attacker's JWKS and
    certificate; the embedded JWK names that server in its own ``x5u`` and the embedded
    certificate in its CA-issuers URL. The server must see no connection at all.
    """
    jwk = _rsa_jwk(attacker_key.public_key())
    certificate = _self_signed_certificate(attacker_key, recorder.url("/ca.der"))
    der = certificate.public_bytes(serialization.Encoding.DER)
    recorder.routes.update(
        {
            "/jwks.json": json.dumps({"keys": [{**jwk, "alg": "RS256", "use": "sig"}]}).encode(),
            "/cert.pem": certificate.public_bytes(serialization.Encoding.PEM),
            "/ca.der": der,
        }
    )
    values: dict[str, Any] = {
        "jku": recorder.url("/jwks.json"),
        "x5u": recorder.url("/cert.pem"),
        "jwk": {**jwk, "x5u": recorder.url("/cert.pem")},
        "x5c": [base64.b64encode(der).decode("ascii")],
    }
    kid = jwk["kid"] if signer == "attacker-key-and-kid" else forger.kid
    private_key = forger.private_key if signer == "our-key-and-kid" else attacker_key
    header = forger.header(kid=kid, **{member: values[member]})
    response = get_me(forger.token(header=header, private_key=private_key))
    assert_invalid_token(response, INVALID_TOKEN)
    _assert_untouched(recorder)


# --- J11-J12: crit, JWE ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "members",
    [
        pytest.param({"crit": ["x-authsvc-unknown"], "x-authsvc-unknown": True}, id="extension"),
        pytest.param({"crit": ["x-authsvc-unknown"]}, id="extension-absent"),
        pytest.param({"crit": ["b64"], "b64": True}, id="b64"),
        pytest.param({"crit": ["exp"]}, id="registered-claim-name"),
    ],
)
def test_j11_unknown_crit_is_rejected_even_when_signed_by_us(
    members: dict[str, Any], forger: Forger, get_me: Callable[[str], Any]
) -> None:
    """J11: a ``crit`` header listing what we do not understand -> 401."""
    assert_invalid_token(get_me(forger.token(header=forger.header(**members))), INVALID_TOKEN)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param({"alg": "RSA-OAEP", "enc": "A256GCM", "typ": "at+jwt"}, id="rsa-oaep"),
        pytest.param({"alg": "dir", "enc": "A128CBC-HS256", "typ": "at+jwt"}, id="dir"),
        pytest.param({"alg": "RS256", "enc": "A256GCM", "typ": "at+jwt"}, id="rs256"),
    ],
)
def test_j12_jwe_with_five_segments_is_rejected(
    header: dict[str, Any], forger: Forger, get_me: Callable[[str], Any]
) -> None:
    """J12: a JWE (5 segments) -> 401, whatever its header names."""
    parts = [
        encode_segment(header | {"kid": forger.kid}),
        b64url(b"k" * 256),
        b64url(b"i" * 12),
        encode_segment(forger.claims()),
        b64url(b"t" * 16),
    ]
    assert_invalid_token(get_me(".".join(parts)), INVALID_TOKEN)


# --- J13-J14: size, shape and encoding -------------------------------------------------------


def _signed_token_of_length(forger: Forger, length: int) -> str:
    """A correctly signed token exactly ``length`` characters long.

    A payload filler sets the size; spaces after the header's JSON text reach the lengths a
    base64 payload alone cannot (no base64 text is 1 more than a multiple of 4 long).
    """
    header_text = json.dumps(forger.header())
    base = len(forger.token(payload=forger.claims(filler="")))
    start = max(0, (length - base) * 3 // 4 - 8)
    for spaces in range(3):
        header = header_text + " " * spaces
        for extra in range(start, start + 24):
            token = forger.token(header=header, payload=forger.claims(filler="f" * extra))
            if len(token) == length:
                return token
    raise AssertionError(f"no filler gives a token of {length} characters")


@pytest.mark.parametrize(
    "length",
    [pytest.param(8 * 1024 + 1, id="8KiB"), pytest.param(1024 * 1024, id="1MiB")],
)
def test_j13_oversized_token_is_rejected_even_when_correctly_signed(
    length: int, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    """J13: 8 KiB and 1 MiB tokens -> 401 (431 would come only from a real server's header
    limit), never 500. "8 KiB" is read as the smallest token over 8 KiB: 8193 characters."""
    token = _signed_token_of_length(forger, length)
    assert_invalid_token(get_me(token), INVALID_TOKEN)


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(lambda h, p, s: f"{p}.{s}", id="2-segments-without-header"),
        pytest.param(lambda h, p, s: f"{h}.{p}.{s}.{b64url(b'extra')}", id="4-segments"),
        pytest.param(lambda h, p, s: f"{h}.{p}.{s}.", id="4-segments-last-empty"),
        pytest.param(lambda h, p, s: f"{h}..{s}", id="empty-payload"),
        pytest.param(lambda h, p, s: f".{p}.{s}", id="empty-header"),
        pytest.param(lambda h, p, s: "..", id="all-empty"),
    ],
)
def test_j13_token_without_exactly_three_non_empty_segments_is_rejected(
    shape: Callable[[str, str, str], str], forger: Forger, get_me: Callable[[str], Any]
) -> None:
    """J13: 2 or 4 segments (and empty ones) -> 401. A token whose third segment is missing
    altogether is J04's missing signature."""
    header, payload, signature = forger.token().split(".")
    assert_invalid_token(get_me(shape(header, payload, signature)), INVALID_TOKEN)


def test_j14_padded_payload_segment_is_rejected_even_when_correctly_signed(
    forger: Forger, get_me: Callable[[str], Any]
) -> None:
    """J14: base64 padding in a segment -> 401; the padded text is what was signed."""
    for filler in range(3):
        payload = json.dumps(forger.claims(filler="f" * filler)).encode("utf-8")
        if len(payload) % 3:
            break
    padded = base64.urlsafe_b64encode(payload).decode("ascii")
    assert padded.endswith("=")
    signing_input = encode_segment(forger.header()) + "." + padded
    token = signing_input + "." + rs256_sign(forger.private_key, signing_input)
    assert_invalid_token(get_me(token), INVALID_TOKEN)


@pytest.mark.parametrize("segment", [0, 1, 2])
@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: s[:10] + "+" + s[11:], id="plus"),
        pytest.param(lambda s: s[:10] + "/" + s[11:], id="slash"),
        pytest.param(lambda s: s + "==", id="padding"),
        pytest.param(lambda s: s[:10] + "*" + s[11:], id="asterisk"),
        pytest.param(lambda s: s[:10] + "%2E" + s[11:], id="percent"),
        pytest.param(lambda s: s[:10] + "~" + s[11:], id="tilde"),
        pytest.param(lambda s: s[:10] + " " + s[11:], id="space"),
    ],
)
def test_j14_non_base64url_characters_are_rejected(
    segment: int, mangle: Callable[[str], str], forger: Forger, get_me: Callable[[str], Any]
) -> None:
    """J14: padding or characters outside the base64url alphabet in any segment -> 401."""
    segments = forger.token().split(".")
    segments[segment] = mangle(segments[segment])
    assert_invalid_token(get_me(".".join(segments)), INVALID_TOKEN)


@pytest.mark.parametrize(
    "header_text",
    [
        pytest.param('["RS256"]', id="array"),
        pytest.param('"RS256"', id="string"),
        pytest.param("123", id="number"),
        pytest.param("null", id="null"),
        pytest.param("", id="empty"),
        pytest.param("{not json", id="not-json"),
        pytest.param('{"alg": "RS256"} {}', id="trailing-data"),
    ],
)
def test_j14_header_that_is_not_a_json_object_is_rejected(
    header_text: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    """J14: a header that is not a JSON object -> 401."""
    signing_input = b64url(header_text.encode()) + "." + encode_segment(forger.claims())
    token = signing_input + "." + rs256_sign(forger.private_key, signing_input)
    assert_invalid_token(get_me(token), INVALID_TOKEN)


@pytest.mark.parametrize(
    "where",
    ["header-extra-member", "header-kid", "payload-extra-claim", "payload-sub"],
)
def test_j14_invalid_utf8_is_rejected(
    where: str, forger: Forger, get_me: Callable[[str], Any]
) -> None:
    """J14: invalid UTF-8 in the header or the payload -> 401, even when signed by us."""
    header: bytes | dict[str, Any] = forger.header()
    payload: bytes | dict[str, Any] = forger.claims()
    header_text = json.dumps(forger.header()).encode("ascii")
    payload_text = json.dumps(forger.claims()).encode("ascii")
    if where == "header-extra-member":
        header = header_text[:-1] + b', "x": "\xff\xfe"}'
    elif where == "header-kid":
        header = header_text.replace(forger.kid.encode(), forger.kid.encode() + b"\xc3")
    elif where == "payload-extra-claim":
        payload = payload_text[:-1] + b', "x": "\xff\xfe"}'
    else:
        sub = forger.claims()["sub"].encode()
        payload = payload_text.replace(sub, sub + b"\xc3")
    assert_invalid_token(get_me(forger.token(header=header, payload=payload)), INVALID_TOKEN)


# --- J15: duplicate claims -------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["sub", "scope", "exp", "aud"])
def test_j15_duplicate_claim_names_in_the_payload_are_rejected(
    claim: str, forger: Forger, admin: dict[str, Any], get_me: Callable[[str], Any]
) -> None:
    """J15: duplicate claim names in the payload -> 401.

    Parsers that keep the first member see a valid token for alice; those that keep the last
    see the admin, the admin scope, a far expiry or another audience.
    """
    second = {
        "sub": admin["id"],
        "scope": "admin",
        "exp": int(time.time()) + 86400 * 365,
        "aud": "some-other-api",
    }[claim]
    payload = json.dumps(forger.claims())[:-1] + f", {json.dumps(claim)}: {json.dumps(second)}}}"
    assert_invalid_token(get_me(forger.token(payload=payload)), INVALID_TOKEN)


# --- J16: ES256 with r = s = 0 ---------------------------------------------------------------


def test_j16_es256_signature_with_r_and_s_zero_is_rejected(
    es256_client: TestClient, es256_token: str
) -> None:
    """J16: ES256 signature with r = s = 0 (a 64-byte all-zero raw signature), on an app
    configured for ES256 -> 401."""
    header, payload, signature = es256_token.split(".")
    assert jwt.get_unverified_header(es256_token)["alg"] == "ES256"
    assert len(b64url_decode(signature)) == 64
    token = f"{header}.{payload}.{b64url(bytes(64))}"
    assert_invalid_token(_me(es256_client, token), INVALID_TOKEN)
