"""Evaluation statistics against hand-computed values and scipy."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
from scipy import stats

from tfgrpo.evaluation.statistics import (
    PairedResult,
    bootstrap_ci,
    gain_p_value,
    mcnemar,
    mean_at_k,
    paired_diff,
    pass_at_k,
    pass_at_k_item,
)


def test_mean_at_k() -> None:
    assert mean_at_k([[1, 0], [1, 1]]) == 0.75
    assert mean_at_k([[1, 0, 0, 0], [0.5]]) == pytest.approx((0.25 + 0.5) / 2)
    with pytest.raises(ValueError):
        mean_at_k([])
    with pytest.raises(ValueError):
        mean_at_k([[1], []])


def test_pass_at_k_known_values() -> None:
    assert pass_at_k_item(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))  # 0.7
    assert pass_at_k_item(5, 0, 3) == 0.0
    assert pass_at_k_item(5, 4, 2) == 1.0
    assert pass_at_k_item(10, 3, 1) == pytest.approx(0.3)
    for n, c, k in itertools.product(range(1, 9), range(0, 9), range(1, 9)):
        if c <= n and k <= n:
            exact = 1 - math.comb(n - c, k) / math.comb(n, k)
            assert pass_at_k_item(n, c, k) == pytest.approx(exact, abs=1e-12)
    with pytest.raises(ValueError, match="n=2"):
        pass_at_k([[1, 0]], k=3)


def test_pass_at_k_with_n_equal_k_is_any_correct() -> None:
    scores = [[0, 0, 1], [0, 0, 0], [1, 1, 1], [0.5, 0, 0]]
    assert pass_at_k(scores, 3) == 0.5
    assert pass_at_k(scores, 3, threshold=0.5) == 0.75
    assert pass_at_k(scores, 1) == pytest.approx(np.mean([1 / 3, 0, 1, 0]))


def test_bootstrap_ci_matches_scipy_loosely() -> None:
    rng = np.random.default_rng(1)
    x = rng.binomial(1, 0.6, size=80).astype(float)
    lo, hi = bootstrap_ci(x, n_boot=4000, seed=3)
    ref = stats.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", random_state=3)
    assert lo == pytest.approx(ref.confidence_interval.low, abs=0.03)
    assert hi == pytest.approx(ref.confidence_interval.high, abs=0.03)
    assert lo < x.mean() < hi
    assert bootstrap_ci(x, seed=7) == bootstrap_ci(x, seed=7)
    assert bootstrap_ci([0.4] * 10) == pytest.approx((0.4, 0.4))
    assert bootstrap_ci([1.0]) == (1.0, 1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_bootstrap_ci_large_input_is_chunked_and_fast() -> None:
    x = np.random.default_rng(0).random(20_000)
    start = time.perf_counter()
    lo, hi = bootstrap_ci(x, n_boot=500)
    assert time.perf_counter() - start < 5
    assert lo < 0.5 < hi and hi - lo < 0.02


def test_paired_diff_exact_hand_example() -> None:
    res = paired_diff([1, 1, 1, 0], [0, 0, 0, 0], n_boot=200)
    assert isinstance(res, PairedResult)
    assert res.delta == 0.75 and res.n == 4 and res.test == "sign-flip exact"
    assert res.p_value == pytest.approx(2 / 8)  # only all-plus and all-minus reach |sum| = 3
    assert res.ci_lo <= res.delta <= res.ci_hi


def test_paired_diff_exact_matches_scipy_permutation() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.random(12), rng.random(12)
    ref = stats.permutation_test(
        (a, b), lambda x, y, axis=-1: np.mean(x - y, axis=axis), permutation_type="samples",
        n_resamples=np.inf, alternative="two-sided", vectorized=True,
    )
    res = paired_diff(a, b)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert res.delta == pytest.approx(np.mean(a - b))


def test_paired_diff_binary_equals_sign_test() -> None:
    a = [1] * 15 + [0] * 5 + [1] * 10
    b = [0] * 15 + [1] * 5 + [1] * 10  # 20 discordant: 15 for a, 5 for b
    res = paired_diff(a, b)
    assert res.test == "sign-flip exact"
    assert res.p_value == pytest.approx(stats.binomtest(15, 20, 0.5).pvalue, rel=1e-9)
    assert res.p_value == pytest.approx(mcnemar(a, b), rel=1e-9)


def test_paired_diff_monte_carlo() -> None:
    a = [1] * 30 + [0] * 10 + [0] * 20
    b = [0] * 30 + [1] * 10 + [0] * 20
    res = paired_diff(a, b, seed=1, n_perm=20_000)
    assert res.test.startswith("sign-flip monte-carlo")
    assert res.p_value == pytest.approx(stats.binomtest(30, 40, 0.5).pvalue, abs=0.004)
    assert paired_diff(a, b, seed=1, n_perm=20_000) == res
    assert res.delta == pytest.approx(20 / 60)


def test_paired_diff_edge_cases() -> None:
    same = paired_diff([1, 0, 1], [1, 0, 1])
    assert (same.delta, same.p_value, same.ci_lo, same.ci_hi) == (0.0, 1.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        paired_diff([1, 0], [1])
    with pytest.raises(ValueError):
        paired_diff([], [])


def test_paired_diff_exact_twenty_is_fast() -> None:
    d = np.random.default_rng(2).normal(0.2, 1, 20)
    start = time.perf_counter()
    res = paired_diff(d, np.zeros(20), n_boot=100)
    assert time.perf_counter() - start < 3
    assert res.test == "sign-flip exact" and 0 < res.p_value <= 1


@pytest.mark.parametrize(("only_a", "only_b", "both"), [(0, 0, 5), (7, 1, 3), (3, 3, 0), (40, 25, 10), (0, 9, 0)])
def test_mcnemar_matches_binomtest(only_a: int, only_b: int, both: int) -> None:
    a = [1] * only_a + [0] * only_b + [1] * both + [0] * 4
    b = [0] * only_a + [1] * only_b + [1] * both + [0] * 4
    expected = 1.0 if only_a + only_b == 0 else stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert mcnemar(a, b) == pytest.approx(expected, rel=1e-9)
    assert mcnemar([bool(x) for x in a], [bool(x) for x in b]) == pytest.approx(expected, rel=1e-9)


def test_mcnemar_threshold_and_errors() -> None:
    assert mcnemar([0.9, 0.9], [0.1, 0.1], threshold=0.5) == pytest.approx(0.5)
    assert mcnemar([0.9, 0.9], [0.1, 0.1]) == 1.0
    with pytest.raises(ValueError):
        mcnemar([1], [1, 0])


def _brute_greater(d: list[float]) -> float:
    """P(sum of sign-flipped nonzero d >= observed), by enumerating every flip."""
    nz = [x for x in d if x != 0]
    obs = sum(nz)
    hits = sum(1 for s in itertools.product((1, -1), repeat=len(nz)) if sum(a * b for a, b in zip(s, nz)) >= obs - 1e-9)
    return hits / 2 ** len(nz)


def test_gain_p_value_is_the_one_sided_sign_test():
    base = [0, 0, 0, 0, 1, 1, 1, 1]
    assert gain_p_value([1] * 8, base) == pytest.approx(1 / 16)  # 4 won, none lost
    assert gain_p_value(base, [1] * 8) == pytest.approx(1.0)  # only losses: no evidence of a gain
    assert gain_p_value(base, base) == 1.0  # nothing changed
    # 13 vs 10 of 32 as 5 won / 2 lost: binomial tail P(X >= 5 | 7) = 29/128
    new = [1] * 5 + [0] * 2 + [1] * 8 + [0] * 17
    old = [0] * 5 + [1] * 2 + [1] * 8 + [0] * 17
    assert gain_p_value(new, old) == pytest.approx(29 / 128)
    # F1-like scores: exact enumeration (up to 20 changed items) against brute force
    rng = np.random.default_rng(3)
    for m in (9, 18):
        a, b = rng.random(m), rng.random(m)
        d = list(a - b)
        want = _brute_greater(d)
        got = gain_p_value(a, b, n_perm=20_000)
        assert got == pytest.approx(want, abs=0.0 if m <= 16 else 0.01)
    # past 20 changed items, Monte Carlo against the exact enumeration
    from tfgrpo.evaluation.statistics import _sign_flip_exact

    a, b = rng.random(24), rng.random(24)
    want = _sign_flip_exact(a - b, float((a - b).sum()), greater=True)
    assert gain_p_value(a, b, n_perm=20_000) == pytest.approx(want, abs=0.01)
    with pytest.raises(ValueError, match="equal lengths"):
        gain_p_value([1, 0], [1])
