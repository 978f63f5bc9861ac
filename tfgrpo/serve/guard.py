"""The proxy's guard, as plain ASGI middleware in front of the app: bearer-token check (when a key is
set) and a request-body cap (413), checked on Content-Length and again while reading chunked bodies."""

from __future__ import annotations

import hmac
import json

from tfgrpo.serve.errors import error_body

OPEN_PATHS = frozenset({"/health"})


async def _send_error(send, status: int, message: str, code: str, type_: str,
                      extra_headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(error_body(message, type_=type_, code=code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *extra_headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Wraps an ASGI app: 401 without the right `Authorization: Bearer KEY` (when `api_key` is set;
    /health stays open), 413 for bodies over `max_body_bytes`. Bodies are read here in full (they
    are small by construction) and replayed to the app."""

    def __init__(self, app, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    def _authorized(self, scope) -> bool:
        if self.api_key is None or scope.get("path") in OPEN_PATHS:
            return True
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.api_key)
        return False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._authorized(scope):
            await _send_error(send, 401, "missing or wrong API key: send `Authorization: Bearer KEY` with the "
                              "proxy's key (--api-key-file / TFGRPO_API_KEY)", "invalid_api_key",
                              "authentication_error", [(b"www-authenticate", b"Bearer")])
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, scope, receive, send) -> bytes | None:
        too_big = (f"request body over {self.max_body_bytes} bytes; send less (fewer or shorter messages) or "
                   "start the proxy with a larger --max-body-mb")
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                await _send_error(send, 413, too_big, "request_too_large", "invalid_request_error")
                return None
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _send_error(send, 413, too_big, "request_too_large", "invalid_request_error")
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # later reads wait for the disconnect, as the server would send it

    return replay
