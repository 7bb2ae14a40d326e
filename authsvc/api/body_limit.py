"""A cap on request bodies (``AUTHSVC_MAX_BODY_BYTES``), enforced before a body is read whole.

FastAPI reads a JSON body into memory before validating it, and Starlette's form parser
spools a large one to disk: a client could make a worker hold gigabytes. A declared
``Content-Length`` over the cap is refused before the app runs at all; a chunked body is
counted as it arrives, and the moment it passes the cap the client gets the 413 and the app
is told the client went away (so it stops reading and answers nobody).

The 413 carries an RFC 6749 §5.2 body (``invalid_request``): the token endpoint's clients
parse that shape, and the rest of the API documents the same one.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authsvc.oauth2.errors import RequestTooLargeError, oauth2_error_response

_DISCONNECT: Message = {"type": "http.disconnect"}


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects a malformed length before we see it
    return None


async def send_too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    await oauth2_error_response(RequestTooLargeError(limit))(scope, receive, send)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await send_too_large(scope, receive, send, self.max_bytes)
            return

        received = 0
        refused = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return _DISCONNECT
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await send_too_large(scope, receive, send, self.max_bytes)
                    return _DISCONNECT
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out; whatever the app answers to the "disconnect" does not
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)
