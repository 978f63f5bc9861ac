"""The HTTP transport of the passthrough path (rollouts, learner calls, the proxy's requests to an
OpenAI-compatible upstream).

A request and its answer go through `http1.OriginPool` (a lean HTTP/1.1 client: one write of prebuilt bytes,
httptools' parser, a LIFO stack of keep-alive connections); a streamed answer through aiohttp, not the openai
SDK or httpx (forwarding a body costs about 0.5 ms of CPU instead of about 2). The upstream's JSON is passed
on as it was sent. Bodies are encoded and answers decoded with orjson (6 and 4 µs less a call than the standard
library for a rollout's request and answer); what orjson refuses (an integer beyond 64 bits, NaN in an answer)
goes through the standard library as before. One pool and one session per event loop (neither can be shared
across loops)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any, AsyncIterator, Awaitable

import aiohttp
import orjson

from tfgrpo.llm.http1 import OriginPool, UpstreamRemoteProtocolError
from tfgrpo.llm.openai_shapes import UpstreamHTTPError, error_message, replay_as_chunks, sse_chunks


def _transport_error(exc: aiohttp.ClientError) -> Exception:
    """aiohttp's errors in the shapes `tfgrpo.llm.errors.classify` knows."""
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ClientOSError)):  # refused, reset, unreachable
        return ConnectionError(f"cannot connect to the upstream: {exc}")
    return UpstreamRemoteProtocolError(f"{type(exc).__name__}: {exc}")


def _status_error(status: int, raw: bytes, reason: str, headers) -> UpstreamHTTPError:
    """An error status with the upstream's message and headers (`classify` reads Retry-After from them)."""
    return UpstreamHTTPError(status, error_message(raw, reason), SimpleNamespace(status_code=status, headers=headers))


async def _close(session: aiohttp.ClientSession | None, pool: OriginPool | None = None) -> None:
    if pool is not None:
        pool.close()
    if session is not None and not session.closed:
        await session.close()


def _encode(payload: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(payload)
    except TypeError:  # what orjson does not take (an integer beyond 64 bits...): as the standard library writes it
        return json.dumps(payload).encode()


def _decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:  # NaN and the like, which the standard library reads; its error otherwise
        return json.loads(raw)


class PassthroughHTTP:
    """POSTs chat-completion bodies to `{api_base}/chat/completions` with a bearer key."""

    def __init__(self, api_base: str, api_key: str) -> None:
        self.url = api_base.rstrip("/") + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self._sessions: dict[int, aiohttp.ClientSession] = {}
        self._pools: dict[int, OriginPool] = {}

    def _pool(self) -> OriginPool:
        key = id(asyncio.get_running_loop())
        pool = self._pools.get(key)
        if pool is None:
            pool = OriginPool(self.url, self.headers)
            self._pools = {key: pool}  # the pools of older loops are gone with their loop
        return pool

    def _session(self) -> aiohttp.ClientSession:
        key = id(asyncio.get_running_loop())
        session = self._sessions.get(key)
        if session is None or session.closed:
            # No connection cap of aiohttp's own (its default is 100): the gateway's semaphore already bounds
            # how many requests are in flight, and a second, lower cap would queue requests silently.
            session = aiohttp.ClientSession(headers=self.headers, read_bufsize=2**20,
                                            connector=aiohttp.TCPConnector(limit=0))
            self._sessions = {key: session}  # sessions of older loops are gone with their loop
        return session

    async def _post(self, payload: dict[str, Any], timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        try:
            resp = await self._session().post(self.url, data=_encode(payload), timeout=timeout)
        except asyncio.TimeoutError:
            raise
        except aiohttp.ClientError as exc:
            raise _transport_error(exc) from exc
        if resp.status >= 400:
            raw = await resp.read()
            resp.release()
            raise _status_error(resp.status, raw, resp.reason or "", resp.headers)
        return resp

    async def send(self, payload: dict[str, Any], *, timeout: float) -> Any:
        """The upstream's JSON answer to one request."""
        answer = await self._pool().post(_encode(payload), timeout=timeout)
        if answer.status >= 400:
            raise _status_error(answer.status, answer.body, answer.reason, answer.headers)
        return _decode(answer.body)

    async def open_stream(self, payload: dict[str, Any], *, timeout: float) -> AsyncIterator[dict[str, Any]]:
        """Chunks of a streamed answer; `timeout` bounds the connection and each read."""
        resp = await self._post(payload, aiohttp.ClientTimeout(total=None, sock_connect=timeout,
                                                               sock_read=timeout))
        if "json" in resp.headers.get("content-type", ""):  # the upstream ignored `stream`
            try:
                return replay_as_chunks(_decode(await resp.read()))
            finally:
                resp.release()
        return self._lines(resp)

    async def _lines(self, resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
        async def lines() -> AsyncIterator[bytes]:
            try:
                async for line in resp.content:
                    yield line
            except asyncio.TimeoutError:
                raise
            except aiohttp.ClientError as exc:
                raise _transport_error(exc) from exc

        try:
            async for chunk in sse_chunks(lines()):
                yield chunk
        finally:
            resp.release()

    def shed(self) -> Awaitable[None]:
        """Set this loop's session aside now (none of its requests may be in flight: later requests open a new
        one) and return the awaitable that closes it. A run's last step closes the rollouts' idle connections
        this way while it waits for the learner, instead of all of them at its end."""
        key = id(asyncio.get_running_loop())
        return _close(self._sessions.pop(key, None), self._pools.pop(key, None))

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            try:
                pool.close()
            except RuntimeError:  # its loop is already closed
                pass
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            try:
                await session.close()
            except RuntimeError:  # its loop is already closed
                pass
