"""Gateway behaviour over real HTTP against a local fault-injecting server."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tfgrpo.llm.budget import Budget, BudgetConfig
from tfgrpo.errors import BudgetExceeded, LLMError
from tfgrpo.llm.backends import OpenAICompatBackend
from tfgrpo.llm.gateway import Gateway
from tfgrpo.llm.scripted import ScriptedBackend
from tfgrpo.llm.call_log import MemoryCallLog
from tests.faultserver import FaultServer

MSG = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture()
def server():
    with FaultServer() as srv:
        yield srv


def gateway(srv: FaultServer, **kw) -> tuple[Gateway, MemoryCallLog]:
    log = MemoryCallLog()
    kw.setdefault("backoff_max_s", 0.2)
    return Gateway(OpenAICompatBackend("fake", srv.api_base), call_log=log, **kw), log


def test_ok_usage_and_log(server):
    gw, log = gateway(server)
    [c] = asyncio.run(gw.chat(MSG, stage="rollout"))
    assert c.text.endswith("\\boxed{4}.")
    assert (c.prompt_tokens, c.completion_tokens, c.finish_reason) == (11, 7, "stop")
    assert log.records[0].stage == "rollout" and log.records[0].request == MSG
    assert log.records[0].response == c.text


def test_429_with_retry_after_then_ok(server):
    server.script(("status", 429, {"retry-after": "0.3"}))
    gw, log = gateway(server, backoff_max_s=5)
    start = time.perf_counter()
    [c] = asyncio.run(gw.chat(MSG))
    assert time.perf_counter() - start >= 0.28  # Retry-After honoured
    assert log.records[0].attempts == 2 and c.text


def test_500_retried_until_exhausted(server):
    server.script(*[("status", 500)] * 5)
    gw, log = gateway(server, max_attempts=3)
    with pytest.raises(LLMError, match="gave up after 3 attempts"):
        asyncio.run(gw.chat(MSG))
    assert len(server.requests) == 3
    assert log.records[0].error and log.records[0].attempts == 3


def test_401_not_retried(server):
    server.script(("status", 401), ("ok", "never"))
    gw, _ = gateway(server)
    with pytest.raises(LLMError, match="authentication"):
        asyncio.run(gw.chat(MSG))
    assert len(server.requests) == 1


def test_context_overflow_message_has_fix(server):
    server.script(("status", 400))
    gw, _ = gateway(server)
    with pytest.raises(LLMError, match="rejected"):
        asyncio.run(gw.chat(MSG))
    assert len(server.requests) == 1


def test_slow_response_times_out_then_retries(server):
    server.script(("sleep", 3.0), ("ok", "fast"))
    gw, log = gateway(server, timeout_s=0.5)
    [c] = asyncio.run(gw.chat(MSG))
    assert c.text == "fast" and log.records[0].attempts == 2


def test_an_answer_that_stalls_after_its_headers_is_a_timeout_within_the_calls_limit():
    """The transport's total timeout covers reading the body too: the gateway sets no timer of its own for it."""

    async def main() -> tuple[float, float, MemoryCallLog]:
        done = asyncio.Event()

        async def stall(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"choi")
            await writer.drain()
            await done.wait()  # the rest of the body never comes while the client waits
            writer.close()

        srv = await asyncio.start_server(stall, "127.0.0.1", 0)
        log = MemoryCallLog()
        gw = Gateway(OpenAICompatBackend("m", f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/v1"),
                     timeout_s=0.5, max_attempts=2, backoff_max_s=0.1, call_log=log)
        assert gw._own_timeout
        began, start = time.time(), time.perf_counter()
        try:
            with pytest.raises(LLMError, match="no answer within"):
                await gw.chat(MSG)
            took = time.perf_counter() - start
        finally:
            await gw.aclose()
            done.set()
            srv.close()
            await srv.wait_closed()
        return began, took, log

    began, took, log = asyncio.run(main())
    assert 1.0 <= took < 3.0  # two attempts of 0.5 s each and a short backoff, not the 30 s stall
    [rec] = log.records
    assert rec.attempts == 2 and "no answer within" in rec.error
    assert began - 0.01 <= rec.ts <= began + 0.2  # the record is made after the call, stamped with its start


def test_shed_sets_the_idle_connections_aside_and_later_calls_open_new_ones(server):
    gw, log = gateway(server)

    async def main():
        await gw.chat(MSG)
        http = gw.backend._http
        old = http._session()
        closing = gw.shed()  # set aside at once: the next call opens a session (and a connection) of its own
        [c] = await gw.chat(MSG)
        new = http._session()
        assert new is not old and not old.closed
        await closing
        assert old.closed and not new.closed
        await gw.aclose()
        assert new.closed
        return c

    assert asyncio.run(main()).text and len(log.records) == 2 and not any(r.error for r in log.records)
    assert Gateway(ScriptedBackend(lambda *a: "x")).shed() is None  # nothing pooled, nothing to close


def test_the_transport_sends_json_and_reads_what_orjson_alone_would_refuse():
    """Bodies go out as JSON with their content type (an integer beyond 64 bits through the standard library),
    and an answer with NaN in it is read as the standard library reads it."""
    from tfgrpo.llm.http_passthrough import PassthroughHTTP

    seen: dict[str, bytes] = {}

    async def answer(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        seen["head"], seen["body"] = head.lower(), await reader.readexactly(length)
        out = b'{"choices": [{"message": {"content": "\xc3\xa9 ok"}, "finish_reason": "stop"}], "score": NaN}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
        await writer.drain()
        writer.close()

    async def main():
        srv = await asyncio.start_server(answer, "127.0.0.1", 0)
        http = PassthroughHTTP(f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/v1", "sk-test")
        try:
            return await http.send({"model": "m", "messages": [{"role": "user", "content": "héllo"}], "seed": 2**70},
                                   timeout=10)
        finally:
            await http.aclose()
            srv.close()
            await srv.wait_closed()

    data = asyncio.run(main())
    assert b"content-type: application/json" in seen["head"] and b"authorization: bearer sk-test" in seen["head"]
    assert json.loads(seen["body"]) == {"model": "m", "messages": [{"role": "user", "content": "héllo"}], "seed": 2**70}
    assert data["choices"][0]["message"]["content"] == "é ok" and data["score"] != data["score"]  # NaN


def test_truncation_visible(server):
    server.script(("ok", "cut off", "length"))
    gw, _ = gateway(server)
    [c] = asyncio.run(gw.chat(MSG))
    assert c.truncated


def test_n_emulated_with_distinct_seeds(server):
    gw, log = gateway(server)
    comps = asyncio.run(gw.chat(MSG, n=3, seed=7))
    assert len(comps) == 3 and len(server.requests) == 3
    assert sorted(r["seed"] for r in server.requests) == [7, 8, 9]
    assert all("n" not in r for r in server.requests)


def test_concurrency_limit():
    active = {"now": 0, "peak": 0}

    class Slow(ScriptedBackend):
        async def send(self, *a, **kw):
            active["now"] += 1
            active["peak"] = max(active["peak"], active["now"])
            await asyncio.sleep(0.05)
            active["now"] -= 1
            return await super().send(*a, **kw)

    gw = Gateway(Slow(), concurrency=3)
    asyncio.run(gw.chat(MSG, n=10))
    assert active["peak"] == 3


def test_budget_stops_before_exceeding():
    budget = Budget(BudgetConfig(max_calls=2))
    gw = Gateway(ScriptedBackend(), budget=budget)
    asyncio.run(gw.chat(MSG, n=2))
    with pytest.raises(BudgetExceeded, match="--max-calls"):
        asyncio.run(gw.chat(MSG))
    assert budget.calls == 2
