"""One row of the learning bench's table: a variant's result against the baseline on the same items."""

from __future__ import annotations

from tfgrpo.evaluation.statistics import mcnemar, paired_diff


def compare_row(name: str, base, res, tokens: int) -> dict:
    d = paired_diff(res.item_means(), base.item_means())
    m = res.metrics()
    return {"name": name, "result": res, "paired": d, "cost": {},
            "mean": m["mean_at_k"], "ci": (m["ci_low"], m["ci_high"]), "pass": m["pass_at_k"],
            "format": m["format_rate"], "delta": d.delta, "dci": (d.ci_lo, d.ci_hi), "p": d.p_value,
            "mcnemar": mcnemar(res.item_means(), base.item_means()) if bench_k1(res) else None, "prior_tokens": tokens}


def show(row: dict) -> dict:
    print(f"  -> {row['name']}: mean {row['mean']:.3f}, delta {row['delta']:+.3f} "
          f"[{row['dci'][0]:+.3f}, {row['dci'][1]:+.3f}] p={row['p']:.3f}, format {row['format']:.2f}", flush=True)
    return row


def bench_k1(res) -> bool:
    return res.k == 1
