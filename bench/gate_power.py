"""What the gate can see: how often it keeps a batch, by the batch's true effect, slice size and alpha.

Each simulated batch changes the answer on a share `--discordance` of the slice's items (measured on the
learning bench: 20% of GSM8K items and 15% of MATH items flip either way when the prompt changes). A batch
with true effect d (points on unseen items) wins a changed item with probability (1 + d / discordance) / 2.
Each trial draws per-item scores for the current and the proposed library and asks the gate's own test
(`tfgrpo.loop.gate.passes`, threshold 0) whether it keeps the batch. One trial per row is one gate decision;
a run of S steps gives a harmful batch S such chances.

    python bench/gate_power.py [--items 32,64,128] [--alphas 1,0.2,0.1,0.05] [--trials 4000]

Last line: `keep_harmful_alpha1=<P(keep | d=-5) at alpha 1> keep_harmful_alpha0.1=<...> power_alpha0.1=<P(keep | d=+10)>`
for the first slice size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tfgrpo.loop.gate import passes  # noqa: E402


def keep_rate(n: int, effect: float, discordance: float, alpha: float, trials: int, rng) -> float:
    if abs(effect) > discordance:
        raise SystemExit(f"an effect of {effect:+.2f} needs more than {discordance:.2f} of the items to change")
    p_win = (1 + effect / discordance) / 2
    kept = 0
    for _ in range(trials):
        base = (rng.random(n) < 0.5).astype(float)  # the base library's answers (their level does not matter)
        changed = rng.random(n) < discordance
        wins = rng.random(n) < p_win
        new = base.copy()
        new[changed] = np.where(wins[changed], 1.0, 0.0)  # a changed item is won (1 vs 0) or lost (0 vs 1)
        base[changed] = 1.0 - new[changed]
        kept += passes(list(base), list(new), 0.0, alpha)["accepted"]
    return kept / trials


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", default="32,64,128", help="slice sizes")
    ap.add_argument("--alphas", default="1,0.2,0.1,0.05", help="gate alphas (1: any gain passes)")
    ap.add_argument("--effects", default="-0.10,-0.05,0,0.05,0.10", help="true effects on unseen items")
    ap.add_argument("--discordance", type=float, default=0.20, help="share of items a batch changes")
    ap.add_argument("--trials", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
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
    n0 = sizes[0]
    harm, good = min(effects, key=lambda e: abs(e + 0.05)), max(effects)
    strict = min(alphas, key=lambda x: abs(x - 0.1))
    print(f"keep_harmful_alpha1={table[(n0, max(alphas))][harm]:.3f} keep_harmful_alpha{strict:g}="
          f"{table[(n0, strict)][harm]:.3f} power_alpha{strict:g}={table[(n0, strict)][good]:.3f} items={n0} "
          f"harmful={harm:+.2f} good={good:+.2f}")


if __name__ == "__main__":
    main()
