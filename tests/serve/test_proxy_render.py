"""One render for training and serving: a training rollout (the loop's own `rollouts` stage) and a proxy
call with the same library and version send byte-identical messages to the upstream."""

from __future__ import annotations

import asyncio
import json

import openai

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from tasks.registry import get_task
from tests.faultserver import FaultServer
from tests.conftest import PAPER_LOOP
from tfgrpo.config import ModelConfig, TrainConfig
from tfgrpo.llm.backends import OpenAICompatBackend
from tfgrpo.llm.gateway import Gateway
from tfgrpo.loop.memo import Memo
from tfgrpo.serve.config import ProxyConfig
from tfgrpo.serve.server import ProxyRuntime
from tfgrpo.loop.context import StepContext
from tfgrpo.loop.pipeline import rollouts_stage

LESSONS = ["Add the ones digits first, then the tens.", "Re-read the question for the exact operation.",
           "Write the final number inside \\boxed{}."]


def training_rollout_messages(store, upstream: FaultServer, tmp_path, version: int) -> tuple[list[dict], object]:
    cfg = TrainConfig(task="arith", library="lib", group_size=2, batch_size=1, **PAPER_LOOP)
    task = get_task("arith")
    ex = task.examples("train")[0]
    policy = Gateway(OpenAICompatBackend("fake", upstream.api_base), call_log=store)
    run_id = store.create_run("lib", "train", {}, "fake")
    memo = Memo(tmp_path / "memo.sqlite")
    ctx = StepContext(cfg, task, {ex.id: ex}, policy, policy, store, memo, run_id)
    async def step() -> None:
        try:
            await rollouts_stage(ctx, {"step": 0, "epoch": 0, "cursor": 0, "version": version, "batch": [ex.id]})
        finally:
            await ctx.drop_ahead()  # the consolidation the stage began for the consolidate node, which is not run here
            await policy.aclose()  # its HTTP session, inside its loop

    try:
        asyncio.run(step())
    finally:
        memo.close()
    rollouts = [r for r, stage in zip(upstream.requests, upstream.stages) if stage == "rollout"]  # not the learner's
    assert len(rollouts) == 2
    assert rollouts[0]["messages"] == rollouts[1]["messages"]
    return rollouts[0]["messages"], ex


def test_training_and_proxy_send_identical_bytes(tmp_path):
    store = ExperienceStore(tmp_path / "s.duckdb", embedder=HashEmbedder())
    try:
        store.apply("lib", [Op(kind=OpKind.ADD, text=t) for t in LESSONS])
        version = store.current_version("lib")
        with FaultServer() as upstream:
            trained, ex = training_rollout_messages(store, upstream, tmp_path, version)
            upstream.requests.clear()
            cfg = ProxyConfig(library="lib", version=version, token_cap=TrainConfig(task="arith").prior_token_cap,
                              placement=TrainConfig(task="arith").placement, port=0)
            model = ModelConfig(model="openai/fake", api_base=upstream.api_base)
            with ProxyRuntime(cfg, model, store=store).start() as rt:
                client = openai.OpenAI(base_url=rt.base_url, api_key="x", max_retries=0)
                client.chat.completions.create(model="fake", messages=get_task("arith").messages(ex))
            served = upstream.requests[0]["messages"]
        assert json.dumps(served, ensure_ascii=False) == json.dumps(trained, ensure_ascii=False)
        assert all(t in json.dumps(served) for t in ("[E1]", "[E2]", "[E3]"))
        calls = store.calls()
        rollout_calls = [c for c in calls if c["stage"] == "rollout"]
        assert len(rollout_calls) == 2 and all(c["request"] == served for c in rollout_calls)
        proxy_call = [c for c in calls if c["stage"] == "proxy"][0]
        assert proxy_call["meta"]["injected_ids"] == [1, 2, 3] and proxy_call["meta"]["version"] == version
    finally:
        store.close()
