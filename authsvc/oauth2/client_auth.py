"""Who the client is (RFC 6749 §2.3).

Until clients are registered every client is public: the ``client_id`` comes from the form or
from the user part of HTTP Basic credentials (what Swagger UI and many libraries send), and it
only names the client in the token's ``client_id`` claim.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import unquote

from authsvc.oauth2.errors import InvalidClientError, InvalidRequestError

DEFAULT_CLIENT_ID = "public"
# Until clients are registered, every client is public and authenticates with nothing.
SUPPORTED_AUTH_METHODS = ("none",)
# RFC 6749 Appendix A.1: client-id = *VSCHAR (%x20-7E); we also refuse empty and over-long ids.
_CLIENT_ID = re.compile(r"^[\x20-\x7e]{1,128}$")


def parse_basic_credentials(header: str) -> tuple[str, str]:
    """RFC 6749 §2.3.1: Basic credentials whose parts are form-urlencoded before base64."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClientError("Unsupported client authentication scheme")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClientError("Malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClientError("Malformed Basic credentials")
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


def identify_client(authorization: str | None, form_client_id: str | None) -> str:
    client_id = form_client_id
    if authorization:
        basic_id, _secret = parse_basic_credentials(authorization)
        if client_id is not None and basic_id != client_id:
            raise InvalidRequestError("client_id in the body differs from the authenticated client")
        client_id = basic_id or client_id
    if client_id is None:
        return DEFAULT_CLIENT_ID
    if not _CLIENT_ID.match(client_id):
        raise InvalidRequestError("Malformed client_id")
    return client_id
