"""Statistics for evaluations: mean@k, pass@k, bootstrap intervals and paired tests.

Scores are per item: `scores[i]` holds the k sampled rewards of item i (each in [0, 1]).
Every function is deterministic for a given `seed`. Inputs that make no statistical sense (no items,
unequal pair lengths, k larger than the samples) raise `ValueError`: they are caller bugs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import Sequence

import numpy as np

EXACT_MAX_NONZERO = 20  # paired sign-flip test: enumerate all 2^m flips up to this many nonzero diffs
_CHUNK_CELLS = 1_000_000  # resampling works in chunks of about this many numbers


@dataclass(frozen=True)
class PairedResult:
    """A paired comparison of two systems on the same items.

    `delta` is mean(a) - mean(b); `ci_lo`/`ci_hi` a percentile bootstrap interval for it; `p_value`
    the two-sided sign-flip (paired permutation) p-value; `test` names how it was computed; `n` is
    the number of paired items.
    """

    delta: float
    ci_lo: float
    ci_hi: float
    p_value: float
    test: str
    n: int


def _check_items(scores: Sequence[Sequence[float]]) -> None:
    if len(scores) == 0:
        raise ValueError("no items to score")
    if any(len(s) == 0 for s in scores):
        raise ValueError("every item needs at least one sample")


def mean_at_k(scores: Sequence[Sequence[float]]) -> float:
    """Mean over items of the mean of each item's k samples."""
    _check_items(scores)
    return float(np.mean([np.mean(s) for s in scores]))


def pass_at_k_item(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one item with `c` correct out of `n` samples: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if k < 1 or k > n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n samples per item, got n={n}")
    if n - c < k:
        return 1.0
    # product form avoids huge binomials: prod_{i=n-c+1}^{n} (1 - k/i)
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k(scores: Sequence[Sequence[float]], k: int, threshold: float = 1.0) -> float:
    """Mean over items of the unbiased pass@k estimate; a sample counts as correct if >= threshold.

    Each item needs n >= k samples. With n == k this is the fraction of items with any correct sample.
    """
    _check_items(scores)
    vals = [pass_at_k_item(len(s), sum(1 for x in s if x >= threshold), k) for s in scores]
    return float(np.mean(vals))


def _resampled_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_boot` resamples (with replacement) of `x`, computed in memory-bounded chunks."""
    n = len(x)
    rows = max(1, _CHUNK_CELLS // n)
    out = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = x[idx].mean(axis=1)
    return out


def _percentile_ci(x: np.ndarray, n_boot: int, alpha: float, seed: int) -> tuple[float, float]:
    if len(x) == 0:
        raise ValueError("no items for a confidence interval")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    means = _resampled_means(x, n_boot, np.random.default_rng(seed))
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_ci(
    per_item: Sequence[float], *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of the mean of `per_item`, resampling items."""
    return _percentile_ci(np.asarray(per_item, dtype=float), n_boot, alpha, seed)


def _as_extreme(sums: np.ndarray, observed: float, tol: float, greater: bool) -> int:
    """How many flipped sums are at least as extreme as `observed`: |sum| >= |observed| (two-sided), or
    sum >= observed (one-sided, `greater`)."""
    if greater:
        return int(np.count_nonzero(sums >= observed - tol))
    return int(np.count_nonzero(np.abs(sums) >= abs(observed) - tol))


def _sign_flip_exact(d: np.ndarray, observed: float, greater: bool = False) -> float:
    """Exact sign-flip p-value: share of all 2^m sign flips at least as extreme as `observed`."""
    m = len(d)
    tol = 1e-9 * max(1.0, float(np.abs(d).sum()))
    head = min(m, 14)  # enumerate the first `head` signs as a matrix, loop over the rest
    signs = np.array(list(product((1.0, -1.0), repeat=head)))
    head_sums = signs @ d[:head]
    hits = 0
    for tail in product((1.0, -1.0), repeat=m - head):
        total = head_sums + float(np.dot(tail, d[head:])) if m > head else head_sums
        hits += _as_extreme(total, observed, tol, greater)
    return hits / 2.0**m


def _sign_flip_mc(d: np.ndarray, observed: float, n_perm: int, seed: int, greater: bool = False) -> float:
    """Monte Carlo sign-flip p-value, (1 + hits) / (1 + n_perm)."""
    rng = np.random.default_rng(seed)
    tol = 1e-9 * max(1.0, float(np.abs(d).sum()))
    rows = max(1, _CHUNK_CELLS // len(d))
    hits = 0
    for start in range(0, n_perm, rows):
        size = min(rows, n_perm - start)
        signs = rng.choice((-1.0, 1.0), size=(size, len(d)))
        hits += _as_extreme(signs @ d, observed, tol, greater)
    return (1 + hits) / (1 + n_perm)


def paired_diff(
    a_items: Sequence[float],
    b_items: Sequence[float],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    n_perm: int = 10_000,
) -> PairedResult:
    """Compare system a with system b on the same items (delta = mean(a) - mean(b)).

    The interval is a percentile bootstrap over items of the per-item differences. The p-value is a
    two-sided paired sign-flip test on the sum of differences: exact (all 2^m flips) when at most
    20 differences are nonzero, otherwise Monte Carlo with `n_perm` flips drawn from `seed`.
    """
    a = np.asarray(a_items, dtype=float)
    b = np.asarray(b_items, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired items need equal lengths, got {a.shape} and {b.shape}")
    if len(a) == 0:
        raise ValueError("no paired items to compare")
    d = a - b
    lo, hi = _percentile_ci(d, n_boot, alpha, seed)
    nz = d[d != 0]
    observed = float(nz.sum())
    if len(nz) == 0:
        p, test = 1.0, "sign-flip (no differences)"
    elif len(nz) <= EXACT_MAX_NONZERO:
        p, test = _sign_flip_exact(nz, observed), "sign-flip exact"
    else:
        p, test = _sign_flip_mc(nz, observed, n_perm, seed), f"sign-flip monte-carlo ({n_perm})"
    return PairedResult(float(d.mean()), lo, hi, min(1.0, p), test, len(d))


def gain_p_value(a_items: Sequence[float], b_items: Sequence[float], *, n_perm: int = 10_000, seed: int = 0) -> float:
    """One-sided paired p-value that system a beats system b on the same items: the share of sign flips of
    the nonzero per-item differences whose sum is at least the observed one. Binary differences (all of one
    size) use the exact binomial tail; otherwise exact enumeration up to EXACT_MAX_NONZERO nonzero
    differences, then Monte Carlo with `n_perm` flips drawn from `seed` (the helpers of `paired_diff`)."""
    a = np.asarray(a_items, dtype=float)
    b = np.asarray(b_items, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired items need equal lengths, got {a.shape} and {b.shape}")
    d = a - b
    nz = d[d != 0]
    m = len(nz)
    if m == 0:
        return 1.0
    sizes = np.abs(nz)
    if np.allclose(sizes, sizes[0]):
        wins = int(np.count_nonzero(nz > 0))
        return min(1.0, sum(math.comb(m, i) for i in range(wins, m + 1)) / 2**m)
    observed = float(nz.sum())
    if m <= EXACT_MAX_NONZERO:
        return _sign_flip_exact(nz, observed, greater=True)
    return _sign_flip_mc(nz, observed, n_perm, seed, greater=True)


def discordant(a_binary: Sequence[float], b_binary: Sequence[float], *, threshold: float = 1.0) -> tuple[int, int]:
    """The discordant pairs: (items only `a` got right, items only `b` got right). An item counts as right
    when its score is >= threshold (bools work as 0/1)."""
    if len(a_binary) != len(b_binary):
        raise ValueError(f"paired items need equal lengths, got {len(a_binary)} and {len(b_binary)}")
    a = [float(x) >= threshold for x in a_binary]
    b = [float(x) >= threshold for x in b_binary]
    return sum(1 for x, y in zip(a, b) if x and not y), sum(1 for x, y in zip(a, b) if y and not x)


def mcnemar(a_binary: Sequence[float], b_binary: Sequence[float], *, threshold: float = 1.0) -> float:
    """Exact McNemar test (two-sided binomial on the discordant pairs, see `discordant`); returns the p-value."""
    only_a, only_b = discordant(a_binary, b_binary, threshold=threshold)
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2**n)
