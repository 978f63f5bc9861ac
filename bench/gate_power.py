"""What the gate can see: how often it keeps a batch, by the batch's true effect, slice size and alpha.

Each simulated batch changes the answer on a share `--discordance` of the slice's items (measured on the
learning bench: 20% of GSM8K items and 15% of MATH items flip either way when the prompt changes). A batch
with true effect d (points on unseen items) wins a changed item with probability (1 + d / discordance) / 2.
Each trial draws per-item scores for the current and the proposed library and asks the gate's own test
(`tfgrpo.loop.gate.passes`, threshold 0) whether it keeps the batch. One trial per row is one gate decision;
a run of S steps gives a harmful batch S such chances.

    python bench/gate_power.py [--items 32,64,128] [--alphas 1,0.2,0.1,0.05] [--trials 4000]

Then what the gate pays: it scores the proposed library's items one by one (as a server's slots finish
them, in an order unrelated to the items) and stops as soon as the batch cannot pass whatever the rest
score (`tfgrpo.loop.gate.can_pass`). The second table gives the share of the slice it scores, by true
effect, at alpha 0.1 and the base library's accuracy `--base-rate`, and checks on every trial that stopping
gave the decision scoring every item gives.

Last line: `keep_harmful_alpha1=<P(keep | d=-5) at alpha 1> keep_harmful_alpha0.1=<...> power_alpha0.1=<P(keep | d=+10)>
... scored_share_null=<share of the slice scored for a batch without effect> stop_changed=<0>` for the first slice size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tfgrpo.loop.gate import can_pass, passes  # noqa: E402


def draw(n: int, effect: float, discordance: float, rng, base_rate: float = 0.5) -> tuple[list, list]:
    """One slice: the base library's per-item scores and the proposed one's."""
    if abs(effect) > discordance:
        raise SystemExit(f"an effect of {effect:+.2f} needs more than {discordance:.2f} of the items to change")
    p_win = (1 + effect / discordance) / 2
    base = (rng.random(n) < base_rate).astype(float)
    changed = rng.random(n) < discordance
    wins = rng.random(n) < p_win
    new = base.copy()
    new[changed] = np.where(wins[changed], 1.0, 0.0)  # a changed item is won (1 vs 0) or lost (0 vs 1)
    base[changed] = 1.0 - new[changed]
    return list(base), list(new)


def keep_rate(n: int, effect: float, discordance: float, alpha: float, trials: int, rng) -> float:
    kept = 0
    for _ in range(trials):
        base, new = draw(n, effect, discordance, rng)  # the base level does not matter to the decision
        kept += passes(base, new, 0.0, alpha)["accepted"]
    return kept / trials


def scored_share(n: int, effect: float, discordance: float, alpha: float, trials: int, rng,
                 base_rate: float) -> tuple[float, int]:
    """(mean share of the slice the gate scores before it can decide, decisions that stopping changed)."""
    total, changed = 0, 0
    for _ in range(trials):
        base, new = draw(n, effect, discordance, rng, base_rate)
        scored: dict[int, float] = {}
        if can_pass(base, scored, 0.0, alpha):
            for i in rng.permutation(n):
                scored[int(i)] = new[i]
                if len(scored) < n and not can_pass(base, scored, 0.0, alpha):
                    break
        total += len(scored)
        stopped_at_refusal = len(scored) < n
        changed += stopped_at_refusal and passes(base, new, 0.0, alpha)["accepted"]
    return total / (trials * n), changed


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", default="32,64,128", help="slice sizes")
    ap.add_argument("--alphas", default="1,0.2,0.1,0.05", help="gate alphas (1: any gain passes)")
    ap.add_argument("--effects", default="-0.10,-0.05,0,0.05,0.10", help="true effects on unseen items")
    ap.add_argument("--discordance", type=float, default=0.20, help="share of items a batch changes")
    ap.add_argument("--trials", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--base-rate", type=float, default=0.5, help="the current library's accuracy on the slice "
                    "(what the proposal can still gain bounds how early the gate can stop)")
    ap.add_argument("--cost-trials", type=int, default=1000)
    a = ap.parse_args(argv)
    sizes = [int(x) for x in a.items.split(",")]
    alphas = [float(x) for x in a.alphas.split(",")]
    effects = [float(x) for x in a.effects.split(",")]
    rng = np.random.default_rng(a.seed)
    print(f"P(the gate keeps a batch) by true effect; {a.trials} trials each, {a.discordance:.0%} of items changed")
    print(f"{'items':>5} {'alpha':>6} " + " ".join(f"{e:>+7.2f}" for e in effects))
    table = {}
    for n in sizes:
        for alpha in alphas:
            row = [keep_rate(n, e, a.discordance, alpha, a.trials, rng) for e in effects]
            table[(n, alpha)] = dict(zip(effects, row))
            print(f"{n:>5} {alpha:>6g} " + " ".join(f"{r:>7.3f}" for r in row), flush=True)
    strict = min(alphas, key=lambda x: abs(x - 0.1))
    print(f"share of the slice scored for the proposal at alpha {strict:g} (base accuracy {a.base_rate:.2f}; "
          f"{a.cost_trials} trials each); the scoring stops once the batch cannot pass")
    print(f"{'items':>5} {'alpha':>6} " + " ".join(f"{e:>+7.2f}" for e in effects))
    shares, wrong = {}, 0
    for n in sizes:
        row = [scored_share(n, e, a.discordance, strict, a.cost_trials, rng, a.base_rate) for e in effects]
        shares[n] = dict(zip(effects, [r[0] for r in row]))
        wrong += sum(r[1] for r in row)
        print(f"{n:>5} {strict:>6g} " + " ".join(f"{r[0]:>7.3f}" for r in row), flush=True)
    print(f"decisions that stopping changed: {wrong} of {len(sizes) * len(effects) * a.cost_trials}")
    n0 = sizes[0]
    harm, good = min(effects, key=lambda e: abs(e + 0.05)), max(effects)
    print(f"keep_harmful_alpha1={table[(n0, max(alphas))][harm]:.3f} keep_harmful_alpha{strict:g}="
          f"{table[(n0, strict)][harm]:.3f} power_alpha{strict:g}={table[(n0, strict)][good]:.3f} items={n0} "
          f"harmful={harm:+.2f} good={good:+.2f} scored_share_null={shares[n0][0.0] if 0.0 in effects else float('nan'):.3f} "
          f"stop_changed={wrong}")


if __name__ == "__main__":
    main()
