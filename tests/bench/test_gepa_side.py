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
    heard = []
    _sync_chat_many(m, [[{"role": "user", "content": "d"}], [{"role": "user", "content": "e"}]], stage="s",
                    max_tokens=8, on_answer=lambda i, text: heard.append((i, text)))
    assert sorted(heard) == [(0, "d!"), (1, "e!")]  # each answer is heard as it arrives
    assert Model.closed == 3


def test_answers_since_the_last_saved_state_are_replayed_in_order_on_resume(tmp_path):
    from bench.gepa_replay import FILE, Replay, Saved, request_key, resume_seed

    asked: list[str] = []

    def ask_for(keys):
        def ask(idx, done):
            texts = []
            for i in idx:
                texts.append(f"sample {len(asked)} of {keys[i]}")
                asked.append(keys[i])
                done(i, texts[-1])
            return texts
        return ask

    keys = [request_key("gepa_rollout", [{"role": "user", "content": q}]) for q in ("a", "b", "a")]
    first = Replay(tmp_path)
    got = first.answers(keys, ask_for(keys))
    assert len(asked) == 3 and got[0] != got[2]  # the same request asked twice is two samples
    with (tmp_path / FILE).open("a") as fh:
        fh.write('{"key": "torn')  # a run killed while writing
    saved = Saved(finished=2, seed_scores=[1.0, 0.0])
    again = Replay(tmp_path, saved)
    assert again.waiting == 3
    more = keys + [request_key("gepa_rollout", [{"role": "user", "content": "c"}])]
    assert again.answers(more, ask_for(more))[:3] == got and asked[3:] == [more[3]]  # in order; only c is new
    again.on_state_saved({"iteration": 2})  # the resumed run saves the state it loaded: nothing is dropped
    assert Replay(tmp_path).waiting == 4
    again.on_state_saved({"iteration": 3})  # a new state covers them
    assert not (tmp_path / FILE).exists() and Replay(tmp_path).waiting == 0

    def cut_short(idx, done):  # a batch stopped after its first answer keeps that answer
        done(idx[0], "the one that arrived")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Replay(tmp_path).answers(more, cut_short)
    kept = Replay(tmp_path)
    assert kept.waiting == 1 and kept.answers(more[:1], ask_for(more)) == ["the one that arrived"]
    # two resumes from one saved state draw alike; a fresh run (or one saved before iteration 1) keeps the seed
    assert resume_seed(7, saved) == resume_seed(7, Saved(2, [])) != resume_seed(7, Saved(3, []))
    assert resume_seed(7, None) == resume_seed(7, Saved(0, [])) == 7


def test_a_resumed_run_takes_the_seed_evaluation_from_the_saved_state():
    from gepa.adapters.default_adapter.default_adapter import EvaluationResult

    from bench.gepa_side import concurrent_adapter

    calls = []

    def chat_many(requests):
        calls.append(len(requests))
        return ["x"] * len(requests)

    data = [{"input": q, "additional_context": {}, "answer": "x"} for q in ("q1", "q2")]
    seed, other = {"system_prompt": "Solve."}, {"system_prompt": "Solve carefully."}
    adapter = concurrent_adapter(chat_many, lambda m: "x", lambda inst, r: EvaluationResult(1.0, "fb"),
                                 resumed=(seed, [0.0, 1.0]))
    assert adapter.evaluate(data, other).scores == [1.0, 1.0] and calls == [2]  # another candidate is asked
    assert adapter.evaluate(data, seed).scores == [0.0, 1.0] and calls == [2]  # the saved scores, no call
    assert adapter.evaluate(data, seed).scores == [1.0, 1.0] and calls == [2, 2]  # only once
