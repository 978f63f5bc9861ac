"""Is greedy decoding through the embedded server the same answer every time? The gate and the learning bench
compare libraries item by item and assume that a prompt asked twice, greedy, gets the same reply; llama.cpp
decodes the requests in flight as one batch, and a batch of another size or mix may round differently.

Three passes over the same first N test items, no prior, greedy, same seeds, one server:
A and B with N-way concurrency (B in reverse order, so each item shares its batch with other items), and C one
item at a time. Counts the items whose reply text differs and whose score differs between passes.

    python bench/determinism.py [--task gsm8k] [--n 24] [--concurrency 4] [--max-tokens 512]

Last line: `same_text_AB=<k>/<n> same_text_AC=<k>/<n> score_flips_AB=<f> score_flips_AC=<f> mean_A=<m> tok_s=<t>`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.registry import load_task  # noqa: E402
from tfgrpo.config import ModelConfig  # noqa: E402
from tfgrpo.evaluation.runner import run_eval  # noqa: E402
from tfgrpo.llm.factory import ModelPool  # noqa: E402
from tfgrpo_common.event_loop import run_hot  # noqa: E402


def one_pass(pool, model: str, concurrency: int, task, items, order, max_tokens: int):
    gw = pool.gateway(ModelConfig(model=model, concurrency=concurrency))

    async def run():
        try:
            return await run_eval(gw, task, [items[i] for i in order], k=1, seed=0, temperature=0.0,
                                  max_tokens=max_tokens, indices=order)
        finally:
            await gw.aclose()

    start = time.perf_counter()
    res = run_hot(run())
    wall = time.perf_counter() - start
    by_id = {it.id: it for it in res.items}
    got = [by_id[ex.id] for ex in items]
    errors = [it.error for it in got if it.error]
    if errors:
        raise SystemExit(f"{len(errors)} item(s) failed, e.g. {errors[0]}; rerun on a quieter machine")
    return got, sum(it.tokens for it in got) / wall, wall


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="gsm8k")
    ap.add_argument("--model", default="local")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=512)
    a = ap.parse_args(argv)
    if a.n < 2 or a.concurrency < 2:
        raise SystemExit("--n and --concurrency must be at least 2 (a batch needs two requests)")
    task = load_task(a.task)
    items = task.examples("test")[: a.n]
    pool = ModelPool(progress=lambda s: print(f"  {s}", flush=True))
    try:
        forward, backward = list(range(len(items))), list(reversed(range(len(items))))
        A, tok_a, wall_a = one_pass(pool, a.model, a.concurrency, task, items, forward, a.max_tokens)
        print(f"A: {len(items)} items, concurrency {a.concurrency}: {wall_a:.0f} s, {tok_a:.1f} tok/s", flush=True)
        B, tok_b, wall_b = one_pass(pool, a.model, a.concurrency, task, items, backward, a.max_tokens)
        print(f"B: reverse order, concurrency {a.concurrency}: {wall_b:.0f} s, {tok_b:.1f} tok/s", flush=True)
        C, tok_c, wall_c = one_pass(pool, a.model, 1, task, items, forward, a.max_tokens)
        print(f"C: one at a time: {wall_c:.0f} s, {tok_c:.1f} tok/s", flush=True)
    finally:
        pool.close()

    def same(x, y):
        return sum(p.completions == q.completions for p, q in zip(x, y))

    def flips(x, y):
        return sum(p.scores != q.scores for p, q in zip(x, y))

    for name, other in (("B", B), ("C", C)):
        differ = [p.id for p, q in zip(A, other) if p.completions != q.completions]
        print(f"A vs {name}: {len(differ)} replies differ {differ[:6]}", flush=True)
    n = len(items)
    mean_a = sum(it.scores[0] for it in A) / n
    print(f"same_text_AB={same(A, B)}/{n} same_text_AC={same(A, C)}/{n} score_flips_AB={flips(A, B)} "
          f"score_flips_AC={flips(A, C)} mean_A={mean_a:.3f} tok_s={tok_a:.1f}")


if __name__ == "__main__":
    main()
