"""The batch planner's comparison with the batch's own earlier vectors (`PendingVectors`): one matrix product
per op, answering what comparing each vector in turn answers (the first of equals, skipped ids left out)."""

from __future__ import annotations

import numpy as np

from experience_store.apply import PendingVectors


def one_by_one(items: dict[int, np.ndarray], vector: np.ndarray, skip: set[int]) -> tuple[int, float] | None:
    best = None
    for exp_id, vec in items.items():
        if exp_id in skip:
            continue
        sim = float(np.dot(vec, vector))
        if best is None or sim > best[1]:
            best = (exp_id, sim)
    return best


def test_pending_vectors_answer_as_a_loop_over_them_would():
    rng = np.random.default_rng(3)
    pending, items = PendingVectors(), {}
    assert not pending and pending.best(np.ones(8, dtype=np.float32), set()) is None
    for n in range(300):  # past the first allocation (16 rows) several times; ids written again keep their place
        exp_id = int(rng.integers(0, 120))
        vec = rng.normal(size=8).astype(np.float32)
        vec /= np.linalg.norm(vec)
        if n % 7 == 0 and items:  # an exact copy of an earlier vector: a tie, which the first written wins
            vec = items[next(iter(items))].copy()
        pending[exp_id] = vec
        items[exp_id] = vec
        query = rng.normal(size=8).astype(np.float32)
        if n % 5 == 0:
            query = vec.copy()
        skip = {int(i) for i in rng.integers(0, 120, size=int(rng.integers(0, 4)))}
        got, want = pending.best(query, skip), one_by_one(items, query, skip)
        if want is None:
            assert got is None
        else:
            assert got is not None and got[0] == want[0] and abs(got[1] - want[1]) < 1e-5, (n, got, want)
    assert list(pending) == list(items) and all(i in pending for i in items)
    assert pending.best(items[next(iter(items))], set(items)) is None  # everything skipped
