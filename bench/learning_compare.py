"""The learning bench's arms as a `tfgrpo compare` result (tfgrpo.evaluation.compare), rebuilt from the
per-item files on the items every arm has, with `none` as the reference row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.learning_arms import ARMS
from bench.learning_eval import read_items


def _eval_result(recs: list[dict], s: dict[str, Any], name: str):
    from tfgrpo.evaluation.runner import EvalResult, ItemResult

    items = []
    for r in recs:
        n = len(r["scores"])
        items.append(ItemResult(r["id"], "", "", list(r["scores"]), list(r["extracted"]), [""] * n,
                                list(r.get("format_ok") or [False] * n), [""] * n, list(r["finish_reasons"]),
                                tokens=r.get("prompt_tokens", 0) + r.get("completion_tokens", 0), error=r.get("error")))
    return EvalResult(s["test_task"], s["model"], 1, "test", name, None, items,
                      sum(r.get("wall_s", 0.0) for r in recs), s["eval_seed"])


def _cost(folder: Path, name: str) -> dict[str, Any]:
    arm = ARMS[name]
    path = folder / arm.train_file
    if not arm.learns or not path.is_file():
        return {}
    meta = json.loads(path.read_text(encoding="utf-8"))
    if arm.kind == "gepa":
        return {"kind": "gepa", "metric_calls": meta.get("metric_calls"), "train_wall_s": meta.get("wall_s")}
    return {"kind": "training-free", "llm_calls": meta.get("llm_calls"),
            "tokens": (meta.get("prompt_tokens") or 0) + (meta.get("completion_tokens") or 0), "usd": 0.0,
            "train_wall_s": meta.get("wall_s")}


def compare_result(folder: Path, arms: list[str]):
    """A CompareResult of `arms` (none first) on their common items, or None without `none` or common items."""
    from tfgrpo.evaluation.compare import CompareResult, RowResult, RowSpec
    from tfgrpo.evaluation.statistics import paired_diff

    if "none" not in arms:
        return None
    s = json.loads((folder / "settings.json").read_text(encoding="utf-8"))
    order = ["none"] + [a for a in arms if a != "none"]
    recs = {a: read_items(folder / f"{a}.jsonl") for a in order}
    common = set.intersection(*({r["id"] for r in rs} for rs in recs.values()))
    if not common:
        return None
    rows = []
    for a in order:
        res = _eval_result([r for r in recs[a] if r["id"] in common], s, a)
        rows.append(RowResult(RowSpec(a, None, cost=_cost(folder, a), label=ARMS[a].label), res))
    base = rows[0].per_item()
    for row in rows[1:]:
        row.paired = paired_diff(row.per_item(), base, seed=s["eval_seed"])
    ids = [r["id"] for r in recs["none"] if r["id"] in common]
    notes = [f"bench/learning.py {s['bench']}: the {len(ids)} items every arm has (of {s['n']} planned); "
             f"model {s['model']}, max_tokens {s['max_tokens']}"]
    return CompareResult(s["test_task"], "test", 1, s["eval_seed"], ids, rows, notes)
