"""An embedded server's calls: one limit of its slots for all its gateways, a timeout that grows with
max_tokens, and a timeout that is not retried (the same request would take as long again)."""

from __future__ import annotations

import asyncio

import pytest

from tests.faultserver import FaultServer
from tfgrpo.errors import LLMError
from tfgrpo.llm.backends import OpenAICompatBackend
from tfgrpo.llm.call_log import MemoryCallLog
from tfgrpo.llm.config import ModelConfig
from tfgrpo.llm.factory import MIN_LOCAL_DECODE_TPS, ModelPool
from tfgrpo.llm.gateway import PROMPT_ALLOWANCE_S, Gateway, Slots
from tfgrpo.llm.scripted import ScriptedBackend

MSG = [{"role": "user", "content": "What is 2 + 2?"}]


def run_closing(gws, coro):
    """Run `coro` and close the gateways' HTTP clients on the same event loop."""
    async def go():
        try:
            return await coro
        finally:
            for gw in gws:
                await gw.aclose()
    return asyncio.run(go())


class Counting(ScriptedBackend):
    """Counts the sends in flight across every gateway that uses one of these."""

    def __init__(self, active: dict) -> None:
        super().__init__()
        self.active = active

    async def send(self, *a, **kw):
        self.active["now"] += 1
        self.active["peak"] = max(self.active["peak"], self.active["now"])
        try:
            await asyncio.sleep(0.03)
            return await super().send(*a, **kw)
        finally:
            self.active["now"] -= 1


def test_gateways_share_the_servers_slots():
    active = {"now": 0, "peak": 0}
    slots = Slots(2)
    policy = Gateway(Counting(active), concurrency=2, slots=slots)
    learner = Gateway(Counting(active), concurrency=2, slots=slots)

    async def both():
        await asyncio.gather(policy.chat(MSG, n=5), learner.chat(MSG, n=5))

    asyncio.run(both())
    assert active["peak"] == 2  # without the shared limit: 4


def test_a_gateway_below_the_slots_keeps_its_own_limit():
    own, total = {"now": 0, "peak": 0}, {"now": 0, "peak": 0}

    class Both(Counting):
        async def send(self, *a, **kw):
            total["now"] += 1
            total["peak"] = max(total["peak"], total["now"])
            try:
                return await super().send(*a, **kw)
            finally:
                total["now"] -= 1

    slots = Slots(3)
    narrow = Gateway(Both(own), concurrency=1, slots=slots)
    wide = Gateway(Both({"now": 0, "peak": 0}), concurrency=3, slots=slots)

    async def both():
        await asyncio.gather(narrow.chat(MSG, n=4), wide.chat(MSG, n=6))

    asyncio.run(both())
    assert own["peak"] == 1 and total["peak"] == 3


def test_timeout_grows_with_max_tokens():
    gw = Gateway(ScriptedBackend(), timeout_s=300, min_decode_tps=2.0)
    assert gw.call_timeout(512) == 316.0
    assert gw.call_timeout(2048) == PROMPT_ALLOWANCE_S + 1024
    assert gw.call_timeout(None) == 300
    assert Gateway(ScriptedBackend(), timeout_s=300).call_timeout(2048) == 300  # a remote API: fixed


def test_slow_answer_within_the_grown_timeout_over_http():
    with FaultServer() as srv:
        srv.script(("sleep", 1.0), ("ok", "second"))
        log = MemoryCallLog()
        gw = Gateway(OpenAICompatBackend("fake", srv.api_base), call_log=log, timeout_s=0.3, min_decode_tps=100.0)
        [c] = run_closing([gw], gw.chat(MSG, max_tokens=100))
    assert c.text != "second" and log.records[0].attempts == 1  # the first answer, after 1 s: no timeout


def test_embedded_timeout_is_not_retried_over_http():
    with FaultServer() as srv:
        srv.script(("sleep", 2.0), ("ok", "fast"))
        log = MemoryCallLog()
        gw = Gateway(OpenAICompatBackend("fake", srv.api_base), call_log=log, timeout_s=0.3, retry_timeouts=False)
        with pytest.raises(LLMError, match="not retried") as err:
            run_closing([gw], gw.chat(MSG, max_tokens=64))
        assert len(srv.requests) == 1
    assert getattr(err.value, "unreachable", False)  # still counts for the run's circuit breaker
    assert log.records[0].attempts == 1 and "not retried" in log.records[0].error


def test_pool_gives_embedded_gateways_one_limit(monkeypatch):
    monkeypatch.setenv("TFGRPO_LOCAL_API_BASE", "http://127.0.0.1:9/v1")
    pool = ModelPool()
    policy = pool.gateway(ModelConfig(model="local:smollm2"))
    learner = pool.gateway(ModelConfig(model="local:smollm2", concurrency=16))
    assert policy.slots is learner.slots is not None
    assert policy.min_decode_tps == MIN_LOCAL_DECODE_TPS and not policy.retry_timeouts
    explicit = pool.gateway(ModelConfig(model="local:smollm2", timeout_s=30))
    assert explicit.call_timeout(2048) == 30  # a timeout the user set is kept
    remote = pool.gateway(ModelConfig(model="openai/x", api_base="http://127.0.0.1:9/v1"))
    assert remote.slots is None and remote.retry_timeouts and remote.min_decode_tps is None


@pytest.mark.real
def test_policy_and_learner_share_the_real_servers_slots(smollm2_server):
    """Two gateways to the embedded server (policy and learner): the calls in flight to it never exceed
    its slots, and each call's latency is its own decode, not a wait behind the other gateway's calls."""
    pool = ModelPool()
    gws = [pool.gateway(ModelConfig(model="local:smollm2")) for _ in range(2)]
    active = {"now": 0, "peak": 0}
    for gw in gws:
        send = gw.backend.send

        async def counted(*a, _send=send, **kw):
            active["now"] += 1
            active["peak"] = max(active["peak"], active["now"])
            try:
                return await _send(*a, **kw)
            finally:
                active["now"] -= 1

        gw.backend.send = counted

    async def run():
        return await asyncio.gather(*[gw.chat([{"role": "user", "content": f"Count to {i}."}], temperature=0.0,
                                              max_tokens=24) for i in range(4) for gw in gws])

    out = run_closing(gws, run())
    limit = gws[0].slots.n
    assert len(out) == 8 and all(c[0].completion_tokens > 0 for c in out)
    assert active["peak"] == limit


@pytest.mark.real
def test_real_server_timeout_is_final(smollm2_server):
    log = MemoryCallLog()
    gw = ModelPool().gateway(ModelConfig(model="local:smollm2", timeout_s=0.01), call_log=log)
    with pytest.raises(LLMError, match="not retried"):
        run_closing([gw], gw.chat([{"role": "user", "content": "Write a long story."}], max_tokens=256))
    assert log.records[0].attempts == 1


def test_a_resumed_run_keeps_the_grown_timeout(monkeypatch, tmp_path):
    """A run stores its model configs with every field written out; on resume the default timeout must not
    come back as one the user set, or every call to the embedded server is cut at 300 s whatever its
    max_tokens (a resumed MATH training lost its gate and learner calls that way)."""
    from experience_store import ExperienceStore, HashEmbedder
    from tfgrpo.config import TrainConfig
    from tfgrpo.llm.config import from_stored
    from tfgrpo.loop.run import start_or_resume

    monkeypatch.setenv("TFGRPO_LOCAL_API_BASE", "http://127.0.0.1:9/v1")
    pool = ModelPool()
    with ExperienceStore(tmp_path / "resume.duckdb", embedder=HashEmbedder()) as store:
        cfg = TrainConfig(task="arith", library="lib")
        start_or_resume(store, cfg, ModelConfig(model="local:smollm2"),
                        ModelConfig(model="local:smollm2", timeout_s=30), False)
        _, _, policy, learner = start_or_resume(store, cfg, ModelConfig(), ModelConfig(), True)
    assert policy.model == "local:smollm2" and "timeout_s" not in policy.model_fields_set
    assert pool.gateway(policy).call_timeout(2048) == PROMPT_ALLOWANCE_S + 1024
    assert pool.gateway(learner).call_timeout(2048) == 30  # a timeout the user set is kept on resume
    assert from_stored({"model": "local", "timeout_s": 300.0, "n_ctx": 8192}).model_fields_set == {"n_ctx"}
