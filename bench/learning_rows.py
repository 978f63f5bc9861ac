"""One row of the learning bench's table, computed from an arm's per-item records (its `<arm>.jsonl`) and
its training sidecar: n, mean with a bootstrap CI, the paired difference vs `none` on the items both have
(bootstrap CI, sign-flip p, McNemar, items gained and lost), truncation, prompt tokens per call, training and evaluation cost.
No model and no dataset is needed: the report is made from the committed files only."""

from __future__ import annotations

from typing import Any

from tfgrpo.evaluation.statistics import bootstrap_ci, discordant, mcnemar, paired_diff


def _paired(recs: list[dict], base: list[dict] | None, seed: int) -> dict[str, Any] | None:
    if base is None:
        return None
    b = {r["id"]: r["score"] for r in base}
    common = [r for r in recs if r["id"] in b]
    if not common:
        return None
    a_s, b_s = [r["score"] for r in common], [b[r["id"]] for r in common]
    d = paired_diff(a_s, b_s, seed=seed)
    gained, lost = discordant(a_s, b_s)
    return {"n": d.n, "delta": d.delta, "ci": (d.ci_lo, d.ci_hi), "p": d.p_value, "test": d.test,
            "mcnemar": mcnemar(a_s, b_s), "gained": gained, "lost": lost}


def arm_row(name: str, label: str, recs: list[dict], planned: int, base: list[dict] | None,
            meta: dict[str, Any] | None, seed: int) -> dict[str, Any]:
    """The figures of one arm (`base`: the `none` arm's records, None for `none` itself)."""
    scores = [r["score"] for r in recs]
    finishes = [f for r in recs for f in r.get("finish_reasons") or []]
    calls = sum(r.get("calls", 1) for r in recs)
    wall = sum(r.get("wall_s", 0.0) for r in recs)
    completion = sum(r.get("completion_tokens", 0) for r in recs)
    row = {"arm": name, "label": label, "n": len(recs), "planned": planned, "partial": len(recs) < planned,
           "mean": sum(scores) / len(scores) if scores else None,
           "ci": bootstrap_ci(scores, seed=seed) if scores else None,
           "paired": _paired(recs, base, seed) if base is not None and name != "none" else None,
           "truncated": (sum(f == "length" for f in finishes) / len(finishes)) if finishes else None,
           "prompt_tokens_per_call": sum(r.get("prompt_tokens", 0) for r in recs) / calls if calls else None,
           "errors": sum(1 for r in recs if r.get("error")), "eval_wall_s": wall,
           "tok_s": completion / wall if wall > 0 else None}
    meta = meta or {}
    row.update({"train_calls": meta.get("llm_calls"), "learner_calls": meta.get("learner_calls"),
                "train_wall_s": meta.get("wall_s"), "experiences": meta.get("experiences")})
    return row


def same_row(name: str, label: str, base: list[dict], planned: int, meta: dict[str, Any] | None,
             seed: int) -> dict[str, Any]:
    """The row of an arm whose every prompt is `none`'s (bench/learning_same.py): `none`'s figures on the
    arm's items, its own training cost, no paired difference and no evaluation of its own."""
    row = arm_row(name, label, base, planned, None, meta, seed)
    row.update({"same_as_none": True, "partial": False, "eval_wall_s": 0.0, "tok_s": None})
    return row


def _f(x, fmt: str, dash: str = "-") -> str:
    return dash if x is None else format(x, fmt)


def row_cells(r: dict[str, Any]) -> list[str]:
    """The Markdown cells of a row (see HEADERS)."""
    mean = "-" if r["mean"] is None else f"{r['mean']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"
    p = r["paired"]
    delta = "-" if p is None else (f"{p['delta']:+.3f} [{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}] "
                                   f"(n={p['n']}, +{p['gained']}/-{p['lost']})")
    calls = "-" if r["train_calls"] is None else f"{r['train_calls']} ({r['learner_calls']})"
    train_min = None if r["train_wall_s"] is None else r["train_wall_s"] / 60
    n = f"{r['n']}/{r['planned']} partial" if r["partial"] else str(r["n"])
    if r.get("same_as_none"):
        mean, delta = f"= none: {mean}", "not measured: every prompt = none's"
    return [f"{r['arm']}", n, mean, delta, _f(p and p["p"], ".3f"), _f(p and p["mcnemar"], ".3f"),
            _f(r["truncated"], ".1%"), _f(r["prompt_tokens_per_call"], ".0f"), calls, _f(train_min, ".1f"),
            f"{r['eval_wall_s'] / 60:.1f}", _f(r["tok_s"], ".1f")]


HEADERS = ["arm", "n", "mean [95% CI]", "Δ vs none [95% CI] (paired n, items gained/lost)", "p sign-flip", "p McNemar", "truncated",
           "prompt tok/call", "train calls (learner)", "train min", "eval min", "tok/s"]


def table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    return out + ["| " + " | ".join(c.replace("|", "\\|") for c in row_cells(r)) + " |" for r in rows]
