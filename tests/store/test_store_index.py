"""The in-memory vector index and bulk loading, checked against plain numpy and the table."""

from __future__ import annotations

import numpy as np
import pytest

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from experience_store.bulk import bulk_add
from experience_store.index import VectorIndex, topk_numpy
from tfgrpo.errors import StoreError


def unit_rows(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_index_matches_numpy_through_adds_updates_and_removes():
    vecs = unit_rows(300)
    index = VectorIndex(16, capacity=16)  # forces several grow steps
    live = {}
    for i in range(200):
        index.upsert(i + 1, vecs[i])
        live[i + 1] = vecs[i]
    for exp_id in range(1, 200, 3):
        index.remove(exp_id)
        del live[exp_id]
    for exp_id in range(2, 200, 7):
        if exp_id in live:
            index.upsert(exp_id, vecs[250 + exp_id % 50])
            live[exp_id] = vecs[250 + exp_id % 50]
    ids = np.array(sorted(live))
    matrix = np.stack([live[i] for i in ids])
    for q in unit_rows(20, seed=1):
        assert [i for i, _ in index.search(q, 5)] == [i for i, _ in topk_numpy(matrix, ids, q, 5)]
    many = index.search_many(unit_rows(3, seed=2), 4)
    assert [[i for i, _ in hits] for hits in many] == [[i for i, _ in index.search(q, 4)] for q in unit_rows(3, seed=2)]
    excluded = index.search(vecs[1], 3, exclude={2})
    assert 2 not in [i for i, _ in excluded] and len(excluded) == 3
    assert len(index) == len(live) and 1 not in index and 2 in index


def test_bulk_add_is_one_version_and_searchable(make_db):
    vecs = unit_rows(500, dim=384, seed=3)
    db = make_db("bulk")
    with ExperienceStore(db, embedder=HashEmbedder()) as store:
        store.apply("lib", [Op(kind=OpKind.ADD, text="hand written lesson")])
        store.search("lib", "hand", 1)  # index cached before the bulk load: extended in place
        result = bulk_add(store, "lib", [f"lesson {i}" for i in range(500)], vecs, reason="seed")
        assert (result.version, result.new_ids[0], result.new_ids[-1]) == (2, 2, 501)
        hits = store.search_vector("lib", vecs[123], 3)
        assert hits[0][0].id == 125 and hits[0][0].text == "lesson 123"
        assert len(store.experiences("lib")) == 501 and len(store.experiences("lib", 1)) == 1
        assert store.history("lib", 125)[0].reason == "seed"
        store._indexes.clear()  # rebuilt from the table: the same vectors came back in order
        assert store.search_vector("lib", vecs[400], 1)[0][0].id == 402
        with store._lock:
            stored = np.stack(store.con.execute(
                "SELECT embedding FROM experiences WHERE library = 'lib' AND id > 1 ORDER BY id").fetchnumpy()["embedding"])
        assert np.allclose(stored, vecs, atol=1e-6)
        with pytest.raises(StoreError, match="expected \\(2, 384\\)"):
            bulk_add(store, "lib", ["a", "b"], unit_rows(2, dim=8))
        with pytest.raises(StoreError, match="item 2: empty text"):
            bulk_add(store, "lib", ["a", " "])
        assert store.current_version("lib") == 2
        bulk_add(store, "fresh", ["first bulk lesson", "second bulk lesson"])  # embedded here
    with ExperienceStore(db, read_only=True) as again:  # the model was recorded
        assert again.search("fresh", "second bulk lesson", 1)[0][0].id == 2
