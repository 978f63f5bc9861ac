"""GEPA's arm sends a minibatch's requests at once (the server's slots decode them together) and gets the
same scores as asking them one by one; the gateway's HTTP sessions are closed with each call's event loop."""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gepa") is None, reason="gepa is not installed")


def test_a_minibatch_goes_to_the_model_at_once_with_the_sequential_results():
    from gepa.adapters.default_adapter.default_adapter import DefaultAdapter, EvaluationResult

    from bench.gepa_side import concurrent_adapter

    def answer(messages) -> str:
        return f"{messages[0]['content']} -> {messages[-1]['content'].upper()}"

    batches, singles = [], []

    def chat_many(requests):
        batches.append(len(requests))
        return [answer(m) for m in requests]

    def chat_one(messages):
        singles.append(messages)
        return answer(messages)

    def evaluator(inst, response):
        return EvaluationResult(score=float(inst["answer"].upper() in response), feedback="fb")

    data = [{"input": q, "additional_context": {}, "answer": a} for q, a in
            [("two plus two", "TWO"), ("same twice", "SAME"), ("same twice", "SAME"), ("nope", "yes")]]
    cand = {"system_prompt": "Solve."}
    ours = concurrent_adapter(chat_many, chat_one, evaluator).evaluate(data, cand, capture_traces=True)
    plain = DefaultAdapter(model=answer, evaluator=evaluator).evaluate(data, cand, capture_traces=True)
    assert batches == [4] and singles == []  # one round trip of 4, nothing asked one by one
    assert ours.scores == plain.scores == [1.0, 1.0, 1.0, 0.0] and ours.outputs == plain.outputs
    assert ours.trajectories == plain.trajectories


def test_the_sync_calls_close_the_sessions_of_their_event_loop():
    from bench.gepa_side import _sync_chat, _sync_chat_many
    from tfgrpo_common.chat import Completion

    class Model:
        closed = 0

        async def chat(self, messages, **kw):
            return [Completion(text=messages[-1]["content"] + "!", finish_reason="stop")]

        async def aclose(self):
            Model.closed += 1

    m = Model()
    assert _sync_chat_many(m, [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]],
                           stage="s", max_tokens=8) == ["a!", "b!"]
    assert _sync_chat(m, [{"role": "user", "content": "c"}], stage="s", max_tokens=8) == "c!"
    assert Model.closed == 2
