"""`tfgrpo demo`: the embedded model learns on the built-in task, shows what it learned (with provenance),
then baseline vs learned library are evaluated on the same held-out items with intervals."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from experience_store.open import store_location
from tfgrpo.cli import options as o
from tfgrpo.cli.common import console, guard, out, shorten
from tfgrpo.cli.eval import evaluate, print_metrics
from tfgrpo.config import ModelConfig, SamplingConfig, TrainConfig
from tfgrpo.evaluation.statistics import paired_diff
from tfgrpo.llm.factory import ModelPool
from tfgrpo.prior import Prior
from experience_store import open_store
from tfgrpo.loop.run import train

BUILTIN_TASK = "arith"


def demo_task() -> str:
    """GSM8K when its files are found (it has headroom for the 1.5B model: about half right), else the
    built-in task, which needs no data files but which the 1.5B model mostly solves already."""
    from tasks.data import resolve_data_dir

    root = resolve_data_dir(None)
    return "gsm8k" if root is not None and (root / "gsm8k" / "train.jsonl").is_file() else BUILTIN_TASK


def show_library(store, library: str) -> None:
    table = Table(title=f"what was learned — library {library!r}")
    for col in ("id", "kind", "experience", "came from"):
        table.add_column(col, overflow="fold")
    for exp in store.experiences(library):
        ops = [h for h in store.history(library, exp.id) if h.outcome == "applied"]
        first = ops[0] if ops else None
        src = "-"
        if first is not None:
            p = first.provenance
            src = f"run {p.run_id} step {(p.step or 0) + 1}, question(s) {p.group_id}, {len(p.rollout_ids)} rollouts"
        text = exp.text if exp.kind == "lesson" else exp.text[:300] + ("…" if len(exp.text) > 300 else "")
        table.add_row(str(exp.id), exp.kind, text, src + (f"; gate {exp.gate_delta:+.2f}" if exp.gate_delta else ""))
    out.print(table)


def _scores(d: dict) -> str:
    """The decision's paired scores; the gate stops scoring a batch that can no longer pass."""
    size = d["slice_items"]
    if d["n_items"] == 0:
        return f"not scored: even solving all {size} items could not pass (best p={d['p_value']:.2f})"
    p = f", +{d['gained']}/-{d['lost']} items, p={d['p_value']:.2f}" if d.get("p_value") is not None else ""
    of = f" of {size}, then stopped: it could not pass" if d["n_items"] < size else ""
    return f"{d['score_new']:.3f} vs {d['score_base']:.3f} ({d['delta']:+.3f}, n={d['n_items']}{of}{p})"


def show_gate(store, library: str, run_id: str) -> None:
    """Each step's op batch and what the gate decided about it (a rejected batch's ops are shown too)."""
    decisions = store.gate_decisions(library, run_id)
    if not decisions:
        return
    table = Table(title="the gate's decisions (proposed library vs current, same held-out questions)")
    for col in ("step", "decision", "score new vs current", "proposed ops"):
        table.add_column(col, overflow="fold")
    for d in decisions:
        ops = "; ".join(f"{op.get('kind', '?')} {op.get('exp_kind') or ''}: {shorten(op.get('text'), 160)}".strip()
                        for op in d["ops"]) or "-"
        table.add_row(str((d["step"] or 0) + 1), "kept" if d["accepted"] else "rejected", _scores(d), ops)
    out.print(table)


def run_demo(model: str = "local", quick: bool = False, db: str | Path | None = None) -> None:
    start = time.perf_counter()
    library = time.strftime("demo-%Y%m%d-%H%M%S")
    task = demo_task()
    n_train, n_test, g, n_gate = (4, 6, 2, 4) if quick else (4, 10, 3, 8)
    batch = 2  # two steps: the second learns with what the first kept
    cfg = TrainConfig(task=task, library=library, epochs=1, batch_size=batch, group_size=g, limit=n_train,
                      rollout=SamplingConfig(temperature=0.7, max_tokens=512), seed=0, gate_items=n_gate)
    policy = ModelConfig(model=model)
    db_path = store_location(db)
    store = open_store(db_path)
    pool = ModelPool(progress=lambda s: console.print(f"[dim]{s}[/]"))
    try:
        console.print(f"[bold]1/3 learning[/] on {n_train} {task} questions (B={batch}, G={g}) with {model}; lessons and "
                      f"worked examples; a batch is kept only if it wins on {n_gate} held-out train questions by more "
                      f"than luck would (one-sided sign test, p <= {cfg.gate_alpha:g})")
        res = train(cfg, policy, None, store=store, db=db_path,
                    on_stage=lambda st, step, msg: console.print(f"  step {step + 1} [bold]{st}[/] {msg}"),
                    progress=lambda s: console.print(f"[dim]{s}[/]"), pool=pool)
        if res.status not in ("completed", "nothing_learned"):
            console.print(f"[red]training {res.status}: {res.error}[/]")
            return
        run = store.get_run(res.run_id)
        console.print(f"  {run.get('llm_calls')} LLM calls, {run.get('tokens')} tokens, {res.wall_s:.0f}s")
        show_library(store, library)
        show_gate(store, library, res.run_id)
        if not store.experiences(library):
            console.print("[bold]2/3 evaluating[/] skipped: nothing passed the gate, so the library is empty and a "
                          "prompt with it is the prompt without it (a before/after would compare identical "
                          f"prompts). Total demo time {(time.perf_counter() - start) / 60:.1f} min.")
            return
        console.print(f"[bold]2/3 evaluating[/] baseline vs library on {n_test} held-out questions")
        common = dict(k=1, split="test", limit=n_test, seed=1, temperature=0.0, max_tokens=512, pool=pool)
        base = evaluate(task, policy, **common)
        prior = Prior.from_store(store, library)
        learned = evaluate(task, policy, apply_prior=prior.apply, library=library, version=prior.version,
                           **common)
        for r in (base, learned):
            store.record_eval(res.run_id, library if r is learned else None, prior.version if r is learned else None,
                              r.task, r.model, r.metrics())
        _report(base, learned, time.perf_counter() - start, library)
    finally:
        pool.close()
        store.close()


def _report(base, learned, wall: float, library: str) -> None:
    print_metrics(base.metrics(), "baseline (no prior)")
    print_metrics(learned.metrics(), "with the learned library")
    d = paired_diff(learned.item_means(), base.item_means())
    console.print(f"[bold]3/3 result[/] paired difference (library - baseline) = {d.delta:+.3f} "
                  f"95% CI [{d.ci_lo:+.3f}, {d.ci_hi:+.3f}], p = {d.p_value:.3f} ({d.test}, n = {d.n}). "
                  f"Total demo time {wall / 60:.1f} min.")
    console.print(f"Inspect: tfgrpo experiences list --library {library}; tfgrpo experiences history "
                  f"--library {library}")


@guard
def cmd(
    model: str = typer.Option("local", "--model", "-m"),
    quick: bool = typer.Option(False, "--quick", help="A smaller run (fewer items)."),
    db: o.Db = None,
) -> None:
    """End to end on the embedded model: learn on the built-in task, show what was learned, evaluate."""
    run_demo(model=model, quick=quick, db=db)
