"""`tfgrpo compare`: baseline vs training-free (learned library in the prompt) vs weight-update (GRPO
checkpoint), on the same items with the same per-item seeds, with paired differences vs the baseline.

Each row is a `RowSpec` (name, ChatModel, optional prior, training-cost dict), so the rows can come from
any model; the first row is the reference of the paired statistics. No torch here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from tasks.base import Example, Task
from tfgrpo.evaluation.runner import EvalResult, run_eval
from tfgrpo.evaluation.statistics import paired_diff
from tfgrpo_common.chat import ChatModel
from tfgrpo_common.event_loop import run_hot

ApplyPrior = Callable[[list[dict]], list[dict]]
ROW_ORDER = ("baseline", "training-free", "weight-update")


@dataclass
class RowSpec:
    """One system to evaluate: a model, the prior applied to its prompts (None = none), what it cost."""

    name: str
    model: ChatModel
    apply_prior: ApplyPrior | None = None
    cost: dict[str, Any] = field(default_factory=dict)
    label: str = ""  # e.g. "gsm8k-lib@v3" or the checkpoint folder


@dataclass
class RowResult:
    spec: RowSpec
    result: EvalResult
    paired: Any = None  # tfgrpo.evaluation.statistics.PairedResult vs the first row; None for the first row

    def per_item(self) -> list[float]:
        return self.result.item_means()

    def to_json(self) -> dict[str, Any]:
        m = self.result.metrics()
        out = {"row": self.spec.name, "label": self.spec.label, "model": m["model"], "n_items": m["n_items"],
               "k": m["k"], "mean_at_k": m["mean_at_k"], "ci_low": m["ci_low"], "ci_high": m["ci_high"],
               "pass_at_k": m["pass_at_k"], "format_rate": m["format_rate"], "errors": m["errors"],
               "eval_tokens": m["tokens"], "eval_wall_s": m["wall_s"], "cost": self.spec.cost,
               "per_item": self.per_item()}
        if self.paired is not None:
            p = self.paired
            out["vs_baseline"] = {"delta": p.delta, "ci_low": p.ci_lo, "ci_high": p.ci_hi,
                                  "p_value": p.p_value, "test": p.test, "n": p.n}
        return out


@dataclass
class CompareResult:
    task: str
    split: str
    k: int
    seed: int
    item_ids: list[str]
    rows: list[RowResult]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "split": self.split, "k": self.k, "seed": self.seed,
                "n_items": len(self.item_ids), "item_ids": self.item_ids, "notes": self.notes,
                "rows": [r.to_json() for r in self.rows]}


async def _eval_rows(rows: Sequence[RowSpec], task: Task, examples: list[Example], *, k: int, seed: int,
                     temperature: float, max_tokens: int, split: str,
                     on_item: Callable[[str], None] | None) -> list[EvalResult]:
    results = []
    for spec in rows:  # one row at a time: local models serve one request at a time anyway
        res = await run_eval(spec.model, task, examples, k=k, seed=seed, temperature=temperature,
                             max_tokens=max_tokens, apply_prior=spec.apply_prior, split=split,
                             on_item=(lambda _it, n=spec.name: on_item(n)) if on_item else None)
        results.append(res)
    return results


def run_compare(rows: Sequence[RowSpec], task: Task, examples: list[Example], *, k: int = 1, seed: int = 0,
                temperature: float = 0.7, max_tokens: int = 512, split: str = "test", n_boot: int = 2000,
                notes: Sequence[str] = (), on_item: Callable[[str], None] | None = None) -> CompareResult:
    """Evaluate every row on `examples` (same items, same per-item seeds) and pair each with rows[0]."""
    if not rows:
        raise ValueError("compare needs at least one row")
    if not examples:
        raise ValueError("compare needs at least one item")
    results = run_hot(_eval_rows(rows, task, examples, k=k, seed=seed, temperature=temperature,
                                 max_tokens=max_tokens, split=split, on_item=on_item))
    out = [RowResult(spec, res) for spec, res in zip(rows, results)]
    base = out[0].per_item()
    for row in out[1:]:
        row.paired = paired_diff(row.per_item(), base, n_boot=n_boot, seed=seed)
    return CompareResult(task.name, split, k, seed, [ex.id for ex in examples], out, list(notes))


def fmt_cost(cost: dict[str, Any]) -> str:
    """One cell: what training this row cost."""
    if not cost:
        return "-"
    if cost.get("kind") == "grpo":
        dev = cost.get("device", "")
        secs = f"{cost.get('gpu_s', 0):.0f} GPU-s" if cost.get("gpu_s") else f"{cost.get('cpu_s', 0):.0f} CPU-s"
        return f"{cost.get('steps', 0)} steps, {secs} ({dev})"
    if cost.get("kind") == "gepa":
        return f"{cost.get('metric_calls', 0)} metric calls (rollouts)"
    if cost.get("kind") == "training-free":
        if cost.get("missing"):
            return str(cost["missing"])
        return (f"{cost.get('llm_calls', 0)} calls, {_tokens(cost.get('tokens', 0))} tok, "
                f"${cost.get('usd', 0.0):.2f}")
    return ", ".join(f"{k}={v}" for k, v in cost.items())


def _tokens(n: int | float) -> str:
    n = int(n or 0)
    return f"{n / 1e6:.2f}M" if n >= 1_000_000 else f"{n / 1e3:.1f}k" if n >= 1000 else str(n)


def fmt_paired(row: RowResult) -> str:
    if row.paired is None:
        return "ref"
    p = row.paired
    return f"{p.delta:+.3f} [{p.ci_lo:+.3f}, {p.ci_hi:+.3f}] p={p.p_value:.3g}"


def table_rows(res: CompareResult) -> list[list[str]]:
    """Cells of the comparison table, one list per row (used by the terminal and the markdown)."""
    cells = []
    for r in res.rows:
        m = r.result.metrics()
        cells.append([r.spec.name, f"{m['mean_at_k']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]",
                      f"{m['pass_at_k']:.3f}", fmt_paired(r), fmt_cost(r.spec.cost),
                      _train_wall(r.spec.cost), f"{m['wall_s']:.1f}"])
    return cells


def _train_wall(cost: dict[str, Any]) -> str:
    wall = cost.get("train_wall_s")
    return "-" if wall is None else f"{float(wall):.1f}"


HEADERS = ["row", "mean@k [95% CI]", "pass@k", "Δ vs baseline [95% CI] p", "training cost", "train s", "eval s"]


def to_markdown(res: CompareResult) -> str:
    lines = [f"# tfgrpo compare: {res.task} ({res.split}, {len(res.item_ids)} items, k={res.k}, seed={res.seed})",
             "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table_rows(res)]
    if res.rows[1:]:
        tests = sorted({r.paired.test for r in res.rows[1:]})
        lines += ["", f"Δ: paired difference of per-item mean@k vs `{res.rows[0].spec.name}` (bootstrap 95% CI over "
                      f"items; p from a two-sided {', '.join(tests)} test)."]
    if res.notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in res.notes]
    return "\n".join(lines) + "\n"


def _when(value: Any) -> float:
    if value is None:
        return float("-inf")
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("-inf")


def training_free_cost(store: Any, library: str) -> dict[str, Any]:
    """Cost of the latest completed `train` run of `library` (calls, tokens, USD, steps, wall time)."""
    done = ("completed", "finished")
    runs = [r for r in store.list_runs(library) if r.get("kind") == "train" and r.get("status") in done]
    if not runs:
        return {"kind": "training-free", "missing": "no completed train run"}
    run = max(runs, key=lambda r: (_when(r.get("finished_at")), _when(r.get("created_at"))))
    return {"kind": "training-free", "run_id": run.get("id"), "llm_calls": int(run.get("llm_calls") or 0),
            "tokens": int(run.get("tokens") or 0), "usd": float(run.get("cost_usd") or 0.0),
            "steps": int(run.get("steps") or 0), "train_wall_s": _run_wall(run)}


def _run_wall(run: dict[str, Any]) -> float | None:
    """A run's wall seconds: the stored value, else finished_at - created_at."""
    for value in (run.get("wall_s"), (run.get("metrics") or {}).get("wall_s")):
        if value is not None:
            return float(value)
    start, end = _when(run.get("created_at")), _when(run.get("finished_at"))
    return end - start if end > start > float("-inf") else None
