"""The proxy's upstream transport adds no connection cap of its own: 120 requests in flight at once reach
the upstream as 120 open connections (aiohttp's default connector would stop at 100 and queue the rest)."""

from __future__ import annotations

import asyncio
import json

from tfgrpo.llm.http_passthrough import PassthroughHTTP

N = 120


async def _serve_until_all_connected(n: int):
    open_now, peak = 0, 0
    all_in = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            await reader.readexactly(length)
            if peak >= n:
                all_in.set()
            try:  # hold every answer until all requests are open at once (or give up after 10 s)
                await asyncio.wait_for(all_in.wait(), 10)
            except asyncio.TimeoutError:
                pass
            body = json.dumps({"id": "x", "object": "chat.completion", "model": "m", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
        finally:
            open_now -= 1
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], lambda: peak


def test_no_connection_cap_below_the_gateway_semaphore():
    async def main():
        server, port, peak = await _serve_until_all_connected(N)
        http = PassthroughHTTP(f"http://127.0.0.1:{port}/v1", "k")
        try:
            answers = await asyncio.gather(*[http.send({"model": "m", "messages": []}, timeout=30) for _ in range(N)])
        finally:
            await http.aclose()
            server.close()
        return answers, peak()

    answers, peak = asyncio.run(main())
    assert len(answers) == N and all(a["choices"][0]["message"]["content"] == "ok" for a in answers)
    assert peak == N
