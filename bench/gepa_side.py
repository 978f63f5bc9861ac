"""GEPA side by side: optimize the system prompt of the same model on the same training items with the
same number of rollouts (GEPA's metric calls), then evaluate its best prompt on the same test items."""

from __future__ import annotations

import asyncio
import time


def _sync_chat(model, messages, *, stage: str, max_tokens: int) -> str:
    [c] = asyncio.run(model.chat(list(messages), temperature=0.7, max_tokens=max_tokens, stage=stage))
    return c.text


def run_gepa_side(bench, base, *, rollouts: int) -> dict | None:
    """Returns a results row like `compare_row`, or None when `gepa` is not installed."""
    try:
        import gepa
        from gepa.adapters.default_adapter.default_adapter import DefaultAdapter, EvaluationResult
    except ImportError:
        print("gepa is not installed (pip install 'tfgrpo[bench]'); skipping the GEPA comparison", flush=True)
        return None
    from bench.learning_rows import compare_row

    a, task = bench.a, bench.task
    train = task.examples("train")[: a.train]
    by_input = {}
    data = []
    for ex in train:
        msgs = task.messages(ex)
        user = msgs[-1]["content"]
        by_input[user] = ex
        data.append({"input": user, "additional_context": {}, "answer": ex.answer})
    seed_prompt = next((m["content"] for m in task.messages(train[0]) if m["role"] == "system"), "")

    def evaluator(inst, response: str):
        r = task.reward(by_input[inst["input"]], response)
        fb = f"{'correct' if r.score >= 1 else 'incorrect'}: {r.reason}. The correct answer is {inst['answer']}."
        return EvaluationResult(score=r.score, feedback=fb)

    adapter = DefaultAdapter(model=lambda m: _sync_chat(bench.model, m, stage="gepa_rollout", max_tokens=a.max_tokens),
                             evaluator=evaluator)
    start = time.perf_counter()
    result = gepa.optimize(
        seed_candidate={"system_prompt": seed_prompt}, trainset=data, valset=data, adapter=adapter,
        reflection_lm=lambda p: _sync_chat(bench.model, [{"role": "user", "content": p}], stage="gepa_reflect",
                                           max_tokens=1024),
        max_metric_calls=rollouts, seed=a.seed, display_progress_bar=False, raise_on_exception=False)
    best = result.best_candidate["system_prompt"]
    gepa_wall = time.perf_counter() - start
    print(f"GEPA finished in {gepa_wall:.0f}s; best prompt:\n{best}\n", flush=True)

    def apply_best(messages):
        rest = [m for m in messages if m.get("role") != "system"]
        return [{"role": "system", "content": best}] + rest

    # At temperature 0 the seed prompt reproduces the baseline exactly: reuse it rather than re-run it.
    res = base if best == seed_prompt and a.k == 1 else bench.evaluate(apply_best)
    row = compare_row("GEPA (system prompt)", base, res, bench.store.count_tokens(best) -
                      bench.store.count_tokens(seed_prompt))
    row["cost"] = {"kind": "gepa", "metric_calls": rollouts, "train_wall_s": gepa_wall}
    row["gepa"] = {"prompt": best, "wall_s": gepa_wall, "is_seed": best == seed_prompt,
                   "candidates": len(result.candidates)}
    return row

