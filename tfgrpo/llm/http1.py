"""A lean HTTP/1.1 client for one origin: the transport of every non-streamed OpenAI-compatible call
(rollouts, learner, the proxy's forwards). Streams still go through aiohttp (`http_passthrough`).

A request is one write of bytes built from a prefix made once (method, path, host, key, content type) and
the body; the answer is parsed by httptools (the C parser uvicorn uses) on the event loop's own protocol
callbacks. Idle keep-alive connections wait in a LIFO stack: a request takes the newest one, without a scan
of the pool, and opens a new connection when none is idle. Measured against aiohttp on the same server and
loop (`bench/transport.py`): a burst of 1,000 requests on new connections costs about a third of the event
loop's CPU, which is what a training step's critical path is made of (see `bench/results.md`).

What it leaves out, on purpose: redirects, cookies, proxies from the environment, compression it did not ask
for other than gzip/deflate, HTTP/2, `Expect: 100-continue`. An OpenAI-compatible endpoint needs none of them.
Errors come out in the shapes `tfgrpo.llm.errors.classify` knows, as aiohttp's were mapped before:
`ConnectionError` when no connection could be made or the peer reset it, `UpstreamRemoteProtocolError` when the
upstream closed it mid-answer or sent malformed HTTP, `TimeoutError` when `timeout` ran out."""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import time
import zlib
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict

#: An idle connection is not reused after this long (aiohttp's default): servers close idle ones after a while.
KEEPALIVE_S = 15.0
#: A host name's addresses are looked up again after this long (aiohttp's default DNS cache).
DNS_TTL_S = 10.0


class UpstreamRemoteProtocolError(Exception):
    """The upstream broke the HTTP exchange (disconnect, malformed response): retryable."""


class Answer:
    """One HTTP answer: status, reason, headers (case-insensitive, made when first read: a rollout's answer is
    read for its body alone), body (decompressed)."""

    __slots__ = ("status", "reason", "_raw", "_headers", "body")

    def __init__(self, status: int, reason: str, raw: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status, self.reason, self._raw, self._headers, self.body = status, reason, raw, None, body

    @property
    def headers(self) -> CIMultiDict:
        if self._headers is None:
            self._headers = CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in self._raw)
        return self._headers


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        """Forget the answer read so far (a new exchange, or the final answer after an interim one)."""
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._headers_done = False
        self._keep = False
        self._coding = ""
        self._framed = False  # Content-Length or chunked: the end of the body is in the bytes, not the close

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamRemoteProtocolError(f"the upstream sent a malformed HTTP answer: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # the transport closes itself; connection_lost settles the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers_done and not self._framed:  # a body delimited by the close: it is complete now
            self._finish()
            return
        if isinstance(exc, OSError):  # reset by the peer, unreachable: as aiohttp says it (ClientOSError)
            self._fail(ConnectionError(f"cannot connect to the upstream: {exc}"))
        else:
            self._fail(UpstreamRemoteProtocolError("the upstream closed the connection before its answer was "
                                                   "complete (server disconnected)"))

    # httptools callbacks
    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        low = name.lower()
        if low == b"content-length" or (low == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True
        elif low == b"content-encoding":
            self._coding = value.decode("latin-1").strip().lower()

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._keep = self._parser.should_keep_alive()  # (read here: once the message is complete it says False)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._finish()

    # the exchange
    def exchange(self, data: bytes) -> asyncio.Future:
        """Send one request; the future resolves to its `Answer`."""
        self._reset()
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return waiter

    @property
    def keep_alive(self) -> bool:
        return not self.closed and self._keep

    def _finish(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the final one follows
            self._reset()
            return
        body, coding = b"".join(self._body), self._coding
        if coding in ("gzip", "deflate") and body:
            try:
                body = zlib.decompress(body, 47 if coding == "gzip" else zlib.MAX_WBITS)
            except zlib.error as exc:
                self._fail(UpstreamRemoteProtocolError(f"the upstream's {coding} body does not decompress: {exc}"))
                return
        waiter.set_result(Answer(status, self._reason.decode("latin-1", "replace"), self._headers, body))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _tls_context() -> ssl.SSLContext:
    """The system's trust store, and certifi's bundle where it is installed (as the openai SDK trusts it): a slim
    container without CA certificates still reaches a hosted provider."""
    ctx = ssl.create_default_context()
    try:
        import certifi

        ctx.load_verify_locations(certifi.where())
    except (ImportError, OSError):
        pass
    return ctx


class OriginPool:
    """POSTs to one URL over pooled keep-alive connections, on the event loop it is first used on."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = _tls_context() if parts.scheme == "https" else None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = self.host if ":" not in self.host else f"[{self.host}]"
        default_port = self.port == (443 if self.ssl else 80)
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}" + ("" if default_port else f":{self.port}"),
                 "Accept: application/json", "User-Agent: tfgrpo"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self._prefix = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        self._idle: collections.deque[_Connection] = collections.deque()
        self._resolved: tuple[float, list[tuple]] = (0.0, [])
        self._closed = False

    async def post(self, body: bytes, *, timeout: float) -> Answer:
        """The answer to one POST of `body`; `timeout` bounds the whole exchange, the connection included."""
        async with asyncio.timeout(timeout):
            conn = self._take_idle() or await self._connect()
            reuse = False
            try:
                answer = await conn.exchange(self._prefix + str(len(body)).encode() + b"\r\n\r\n" + body)
                reuse = conn.keep_alive
                return answer
            finally:
                if reuse and not self._closed:
                    conn.idle_since = time.monotonic()
                    self._idle.append(conn)
                else:
                    conn.close()

    def _take_idle(self) -> _Connection | None:
        idle = self._idle
        if not idle:
            return None
        now = time.monotonic()
        while idle and now - idle[0].idle_since > KEEPALIVE_S:  # the oldest first: the server may have dropped them
            idle.popleft().close()
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        last: OSError | None = None
        for family, _, proto, _, addr in await self._addresses(loop):
            try:
                _, conn = await loop.create_connection(_Connection, addr[0], addr[1], family=family, proto=proto,
                                                       ssl=self.ssl, server_hostname=self.host if self.ssl else None)
                return conn
            except OSError as exc:  # refused, unreachable, TLS refused: the next address, else the error
                last = exc
        self._resolved = (0.0, [])  # look the name up again next time
        raise ConnectionError(f"cannot connect to the upstream {self.host}:{self.port}: {last}")

    async def _addresses(self, loop) -> list[tuple]:
        when, infos = self._resolved
        if infos and time.monotonic() - when < DNS_TTL_S:
            return infos
        try:
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ConnectionError(f"cannot connect to the upstream: {self.host!r} does not resolve ({exc})") from exc
        self._resolved = (time.monotonic(), infos)
        return infos

    def close(self) -> None:
        """Close the idle connections; those in flight close when their exchange ends."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()
