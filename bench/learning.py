"""Does the learned library help? Train a library on a GSM8K train subset with the embedded model as policy
and learner, then evaluate baseline (no prior) and the library on the same held-out test items with the
same seeds; paired difference with a 95% bootstrap interval and a paired sign-flip p-value (McNemar too),
pass@k, format compliance, training cost and prior tokens per call. Ablations in the same run: G=1 (no
group comparison) and directly generated experiences (no rollouts). GEPA side by side when installed.

    python bench/learning.py            # full: local (1.5B), 32 train questions, G=4, 2 epochs, 150 test items
    python bench/learning.py --quick    # local:qwen0.5b, 4 train, G=4, 1 epoch, 16 test items, no ablations

Last line: `delta_mean=<x> ci=[<lo>,<hi>] p=<p> gepa_delta=<y>`.
Defaults: 32 questions x G=4 x 2 epochs = 256 rollouts is the smallest run in which a 1.5B model sees
enough mixed groups (about 1 in 3 here) to propose a dozen lessons; 150 test items give a +-8 point CI.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.learning_rows import compare_row, show  # noqa: E402
from bench.run_all import machine  # noqa: E402
from experience_store import ExperienceStore  # noqa: E402
from tasks.registry import load_task  # noqa: E402
from tfgrpo.config import ModelConfig, SamplingConfig, TrainConfig  # noqa: E402
from tfgrpo.loop.direct import direct_experiences, store_direct  # noqa: E402
from tfgrpo.evaluation.runner import run_eval  # noqa: E402
from tfgrpo.llm.factory import ModelPool  # noqa: E402
from tfgrpo.llm.fetch import resolve_gguf, sha256_file  # noqa: E402
from tfgrpo.prior import Prior, render_block  # noqa: E402
from tfgrpo.loop.run import train  # noqa: E402


def leaked_numbers(experiences: list[str], test_questions: list[str], min_digits: int = 3) -> list[str]:
    """Experiences that contain a number of >= `min_digits` digits appearing verbatim in a test question."""
    test_nums = {n for q in test_questions for n in re.findall(r"\d[\d,]*", q) if len(n.replace(",", "")) >= min_digits}
    return [e for e in experiences if any(n in e for n in re.findall(r"\d[\d,]*", e) if n in test_nums)]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", default=None)
    ap.add_argument("--task", default="gsm8k")
    ap.add_argument("--train", type=int, default=None, help="training questions")
    ap.add_argument("--test", type=int, default=None, help="test items")
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--db", type=Path, default=Path("bench/out/learning.duckdb"))
    ap.add_argument("--no-ablations", action="store_true")
    ap.add_argument("--no-gepa", action="store_true")
    ap.add_argument("--results", type=Path, default=Path("bench/results.md"))
    a = ap.parse_args(argv)
    a.model = a.model or ("local:qwen0.5b" if a.quick else "local")
    custom = any(v is not None for v in (a.train, a.test, a.epochs))
    a.train = a.train or (4 if a.quick else 32)
    a.test = a.test or (16 if a.quick else 150)
    a.epochs = a.epochs or (1 if a.quick else 2)
    a.no_ablations = a.no_ablations or a.quick
    a.mode = "quick" if a.quick else ("custom" if custom else "full")
    return a


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.pool = ModelPool(progress=lambda s: print(f"  {s}", flush=True))
        a.db.parent.mkdir(parents=True, exist_ok=True)
        self.store = ExperienceStore(a.db)
        self.policy = ModelConfig(model=a.model)
        self.model = self.pool.gateway(self.policy, call_log=self.store)
        self.task = load_task(a.task)
        self.test_items = self.task.examples("test")[: a.test]
        self.tag = time.strftime("%Y%m%d-%H%M%S")
        self.machine = machine()  # at the start: it includes the load average before the bench ran

    def evaluate(self, apply_prior=None):
        """The test items with a prompt transform (a library's `Prior.apply`, GEPA's prompt) or none."""
        a = self.a
        return asyncio.run(run_eval(self.model, self.task, self.test_items, k=a.k, seed=a.seed + 1,
                                    temperature=0.0 if a.k == 1 else 0.7, max_tokens=a.max_tokens,
                                    apply_prior=apply_prior))

    def train_library(self, name: str, group: int) -> tuple[str, dict]:
        a = self.a
        lib = f"{name}-{self.tag}"
        cfg = TrainConfig(task=a.task, library=lib, epochs=a.epochs, batch_size=a.batch, group_size=group,
                          allow_group_of_one=group == 1, limit=a.train, seed=a.seed,
                          rollout=SamplingConfig(temperature=0.7, max_tokens=a.max_tokens))
        res = train(cfg, self.policy, None, store=self.store, db=a.db, pool=self.pool,
                    on_stage=lambda st, step, msg: print(f"  [{name}] step {step + 1} {st}: {msg}", flush=True))
        run = self.store.get_run(res.run_id)
        calls = self.store.calls(run_id=res.run_id)
        by_stage = dict(Counter(c["stage"] for c in calls))
        return lib, {"status": res.status, "wall_s": res.wall_s, "llm_calls": run["llm_calls"],
                     "tokens": run["tokens"], "cost_usd": run["cost_usd"], "by_stage": by_stage,
                     "prompt_tokens": sum(c["prompt_tokens"] or 0 for c in calls),
                     "completion_tokens": sum(c["completion_tokens"] or 0 for c in calls)}

    def direct_library(self) -> str:
        lib = f"direct-{self.tag}"
        qs = [ex.question for ex in self.task.examples("train")[: self.a.train]]
        lessons, call_id = asyncio.run(direct_experiences(self.model, qs, seed=self.a.seed))
        store_direct(self.store, lib, lessons, None, call_id)
        return lib

    def prior_tokens(self, lib: str) -> int:
        p = Prior(self.store, lib)
        return self.store.count_tokens(render_block(p.select([])))


def main(argv=None) -> None:
    a = parse_args(argv)
    b = Bench(a)
    start = time.perf_counter()
    try:
        print(f"training library ({a.train} questions, G={a.group}, {a.epochs} epochs) with {a.model}", flush=True)
        lib, cost = b.train_library("grpo", a.group)
        exps = [e.text for e in b.store.experiences(lib)]
        leaks = leaked_numbers(exps, [ex.question for ex in b.test_items])
        print(f"evaluating baseline and library on {len(b.test_items)} test items", flush=True)
        base = b.evaluate(None)
        rows = [show(compare_row("baseline", base, base, 0)),
                show(compare_row("training-free (G=%d)" % a.group, base, b.evaluate(Prior(b.store, lib).apply),
                                 b.prior_tokens(lib)))]
        rows[1]["cost"] = tf_cost(cost)
        if not a.no_ablations:
            lib1, cost1 = b.train_library("g1", 1)
            rows.append(show(compare_row("ablation G=1", base, b.evaluate(Prior(b.store, lib1).apply), b.prior_tokens(lib1))))
            rows[-1]["cost"] = tf_cost(cost1)
            libd = b.direct_library()
            rows.append(show(compare_row("ablation direct", base, b.evaluate(Prior(b.store, libd).apply),
                                         b.prior_tokens(libd))))
        gepa = None
        if not a.no_gepa:
            from bench.gepa_side import run_gepa_side

            gepa = run_gepa_side(b, base, rollouts=cost_rollouts(a))
            if gepa is not None:
                rows.append(show(gepa))
        write_results(a, b, rows, cost, exps, leaks, time.perf_counter() - start)
        write_compare(a, b, rows)
        main_row, gd = rows[1], (gepa["delta"] if gepa else float("nan"))
        print(f"delta_mean={main_row['delta']:+.4f} ci=[{main_row['dci'][0]:+.4f},{main_row['dci'][1]:+.4f}] "
              f"p={main_row['p']:.4f} gepa_delta={gd:+.4f}")
    finally:
        b.pool.close()
        b.store.close()


def tf_cost(cost: dict) -> dict:
    return {"kind": "training-free", "llm_calls": cost["llm_calls"], "tokens": cost["tokens"],
            "usd": cost["cost_usd"], "train_wall_s": cost["wall_s"]}


def cost_rollouts(a) -> int:
    return a.train * a.group * a.epochs


def write_compare(a, b, rows) -> None:
    """The same rows as a `tfgrpo compare` result: Markdown table and JSON with every per-item score."""
    import json

    from tfgrpo.evaluation.compare import CompareResult, RowResult, RowSpec, to_markdown

    res = CompareResult(a.task, "test", a.k, a.seed + 1, [ex.id for ex in b.test_items],
                        [RowResult(RowSpec(r["name"], b.model, cost=r["cost"]), r["result"], r["paired"] if i else None)
                         for i, r in enumerate(rows)], notes=[f"bench/learning.py {a.mode} run {b.tag}, model {a.model}"])
    out = a.db.parent / f"learning-{b.tag}"
    out.with_suffix(".md").write_text(to_markdown(res), encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(res.to_json(), indent=1, default=str), encoding="utf-8")
    print(f"wrote {out}.md and {out}.json", flush=True)


def write_results(a, b, rows, cost, exps, leaks, wall) -> None:
    from tfgrpo.llm.registry import is_local

    sha = f"sha256 `{sha256_file(resolve_gguf(a.model))[:16]}...`" if is_local(a.model) else "(not a local GGUF)"
    lines = [f"\n## Learning effect — {time.strftime('%Y-%m-%d %H:%M')} UTC ({a.mode})", "",
             f"Machine: {b.machine}. Command: `python bench/learning.py {' '.join(sys.argv[1:])}`. "
             f"Model `{a.model}` {sha}. Task {a.task}: {a.train} train questions, "
             f"G={a.group}, B={a.batch}, {a.epochs} epochs; eval {len(b.test_items)} test items, k={a.k}, "
             f"seed {a.seed}. Training: {cost['llm_calls']} LLM calls ({cost['by_stage']}), {cost['prompt_tokens']} prompt + "
             f"{cost['completion_tokens']} completion tokens, {cost['wall_s'] / 60:.1f} min. Total bench wall time {wall / 60:.1f} min.", "",
             "| variant | mean@k [95% CI] | pass@k | format | Δ vs baseline [95% CI] | p (sign-flip) | prior tokens/call |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['mean']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] | {r['pass']:.3f} | "
                     f"{r['format']:.2f} | {r['delta']:+.3f} [{r['dci'][0]:+.3f}, {r['dci'][1]:+.3f}] | {r['p']:.3f} | "
                     f"{r['prior_tokens']} |")
    lines += ["", f"Learned experiences ({len(exps)}):", *[f"- {e}" for e in exps],
              "", f"Experiences containing a test question's number verbatim: {len(leaks)}", ""]
    for r in rows:
        if "gepa" in r:
            g = r["gepa"]
            lines += [f"GEPA: {g['candidates']} candidates in {g['wall_s'] / 60:.1f} min; best system prompt"
                      f"{' (the seed prompt: GEPA found nothing better)' if g['is_seed'] else ''}:", "",
                      *[f"> {ln}" for ln in g["prompt"].splitlines()], ""]
    a.results.parent.mkdir(parents=True, exist_ok=True)
    with a.results.open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
