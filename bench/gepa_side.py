"""GEPA side by side: optimize the system prompt of the same model on the same training items with the
same number of rollouts (GEPA's metric calls) as the paper arm; its best prompt is then evaluated on the
test items by the bench like any other arm (`system_prompt_apply`). GEPA's state lives in `run_dir`, so an
optimization stopped by the time budget (or killed) resumes there."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable

from bench.gepa_replay import Replay, request_key, resume_seed, saved_state


async def _closing(model, coro):
    """Run `coro`, then close the model's HTTP sessions: they belong to this call's event loop."""
    try:
        return await coro
    finally:
        close = getattr(model, "aclose", None)
        if close is not None:
            await close()


def _sync_chat_many(model, requests: list, *, stage: str, max_tokens: int,
                    on_answer: Callable[[int, str], None] | None = None) -> list[str]:
    """The answers to `requests`, sent at once (the server's parallel slots decode them together);
    `on_answer(i, text)` hears each one as it arrives."""
    from tfgrpo_common.event_loop import gather_or_cancel

    async def one(i, messages):
        [c] = await model.chat(list(messages), temperature=0.7, max_tokens=max_tokens, stage=stage)
        if on_answer is not None:
            on_answer(i, c.text)
        return c.text

    return list(asyncio.run(_closing(model, gather_or_cancel(*(one(i, m) for i, m in enumerate(requests))))))


def _sync_chat(model, messages, *, stage: str, max_tokens: int) -> str:
    return _sync_chat_many(model, [messages], stage=stage, max_tokens=max_tokens)[0]


def concurrent_adapter(chat_many, chat_one, evaluator, resumed: tuple[dict, list[float]] | None = None):
    """GEPA's DefaultAdapter, except that a minibatch's requests go to the model at once instead of one
    after another (its callable path is sequential, which leaves all but one server slot idle). `evaluate`
    builds the same messages the adapter will ask for and answers them together; the adapter then reads
    the answers; a request it builds differently is simply asked on its own (`chat_one`).

    `resumed` = (seed candidate, its saved valset scores): GEPA evaluates the seed on the whole valset before
    it loads a saved state and then discards that evaluation; the first such call gets the saved scores
    (with empty outputs) instead of a valset's worth of model calls."""
    from gepa.adapters.default_adapter.default_adapter import DefaultAdapter
    from gepa.core.adapter import EvaluationBatch

    class ConcurrentAdapter(DefaultAdapter):
        def __init__(self) -> None:
            self._ready: dict[str, list[str]] = {}
            self._resumed = resumed
            super().__init__(model=self._answer, evaluator=evaluator)

        def _answer(self, messages) -> str:
            waiting = self._ready.get(request_key("answer", messages))
            return waiting.pop(0) if waiting else chat_one(messages)

        def evaluate(self, batch, candidate, capture_traces=False):
            if self._resumed is not None and not capture_traces and candidate == self._resumed[0] \
                    and len(batch) == len(self._resumed[1]):
                scores, self._resumed = list(self._resumed[1]), None
                return EvaluationBatch(outputs=[{"full_assistant_response": ""} for _ in scores], scores=scores,
                                       trajectories=None)
            system = next(iter(candidate.values()))
            requests = [[{"role": "system", "content": system}, {"role": "user", "content": f"{d['input']}"}]
                        for d in batch]
            for messages, text in zip(requests, chat_many(requests)):
                self._ready.setdefault(request_key("answer", messages), []).append(text)
            try:
                return super().evaluate(batch, candidate, capture_traces)
            finally:
                self._ready = {}

    return ConcurrentAdapter()


def system_prompt_apply(prompt: str):
    """A prompt transform that replaces the system prompt with `prompt`."""
    def apply(messages: list[dict]) -> list[dict]:
        return [{"role": "system", "content": prompt}] + [m for m in messages if m.get("role") != "system"]
    return apply


class _Deadline:
    """A GEPA stop callback: true once the bench's time budget is spent."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline

    def __call__(self, gepa_state) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def _dataset(task, train: list) -> tuple[list[dict], dict[str, Any], str]:
    by_input, data = {}, []
    for ex in train:
        user = task.messages(ex)[-1]["content"]
        by_input[user] = ex
        data.append({"input": user, "additional_context": {}, "answer": ex.answer})
    seed_prompt = next((m["content"] for m in task.messages(train[0]) if m["role"] == "system"), "")
    return data, by_input, seed_prompt


def run_gepa(model, task, train: list, *, max_metric_calls: int, seed: int, max_tokens: int, run_dir: Path,
             deadline: float | None = None) -> dict[str, Any] | None:
    """GEPA's best system prompt with {"complete": False} when the deadline stopped it first; None when
    `gepa` is not installed."""
    try:
        import gepa
        from gepa.adapters.default_adapter.default_adapter import EvaluationResult
    except ImportError:
        print("gepa is not installed (pip install 'tfgrpo[bench]'); skipping the GEPA arm", flush=True)
        return None
    data, by_input, seed_prompt = _dataset(task, train)

    def evaluator(inst, response: str):
        r = task.reward(by_input[inst["input"]], response)
        fb = f"{'correct' if r.score >= 1 else 'incorrect'}: {r.reason}. The correct answer is {inst['answer']}."
        return EvaluationResult(score=r.score, feedback=fb)

    saved = saved_state(run_dir)
    replay = Replay(run_dir, saved)
    if saved is not None:
        print(f"GEPA resumes at iteration {saved.finished + 1}: the seed's valset scores come from the saved state"
              f"{f', {replay.waiting} answers of the interrupted iteration are recorded' if replay.waiting else ''}",
              flush=True)

    def ask(stage: str, requests: list, tokens: int) -> list[str]:
        return replay.answers([request_key(stage, m) for m in requests], lambda idx, done: _sync_chat_many(
            model, [requests[i] for i in idx], stage=stage, max_tokens=tokens,
            on_answer=lambda j, text: done(idx[j], text)))

    seed_candidate = {"system_prompt": seed_prompt}
    adapter = concurrent_adapter(lambda reqs: ask("gepa_rollout", reqs, max_tokens),
                                 lambda m: ask("gepa_rollout", [m], max_tokens)[0], evaluator,
                                 resumed=None if saved is None else (seed_candidate, saved.seed_scores))
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = gepa.optimize(
        seed_candidate=seed_candidate, trainset=data, valset=data, adapter=adapter,
        reflection_lm=lambda p: ask("gepa_reflect", [[{"role": "user", "content": p}]], 1024)[0],
        max_metric_calls=max_metric_calls, seed=resume_seed(seed, saved), display_progress_bar=False,
        raise_on_exception=False, run_dir=str(run_dir), stop_callbacks=[_Deadline(deadline)], callbacks=[replay])
    wall = time.perf_counter() - start
    if replay.replayed:
        print(f"GEPA replayed {replay.replayed} recorded answers instead of asking the model again", flush=True)
    calls = int(result.total_metric_calls or 0)
    complete = calls >= max_metric_calls or not _Deadline(deadline)(None)
    best = result.best_candidate["system_prompt"]
    print(f"GEPA {'finished' if complete else 'stopped by the time budget'} after {calls} metric calls "
          f"in {wall:.0f}s; best prompt:\n{best}\n", flush=True)
    return {"complete": complete, "prompt": best, "seed_prompt": seed_prompt, "is_seed": best == seed_prompt,
            "candidates": len(result.candidates), "metric_calls": calls, "max_metric_calls": max_metric_calls,
            "wall_s": wall}
