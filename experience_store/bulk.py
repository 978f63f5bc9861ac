"""Bulk loading: many ADDs as one version, written set-wise (no per-row round trips, no dedup).

For seeding a large library (benchmarks, big imports with dedup off). Rows go through DuckDB's
NumPy scans and one INSERT ... SELECT per table, so 100k experiences load in seconds, not minutes.
Every row still gets its op record (ADD, outcome applied) and a revision, like `apply`.
"""

from __future__ import annotations

import re

import numpy as np

from tfgrpo_common.errors import StoreError

from .apply import clean_text
from .base import utcnow
from .embed import normalize_rows
from .models import ApplyResult, Provenance
from .store import ExperienceStore

_EXP_INSERT = """
INSERT INTO experiences (library, id, text, status, created_at, updated_at, created_version, updated_version, embedding)
SELECT $lib, $start + t.rowid, t.column0, 'live', $now, $now, $v, $v, e.emb
FROM _bulk_txt t JOIN (
    SELECT (rowid // $dim) AS i, list(column0 ORDER BY rowid) AS emb FROM _bulk_vec GROUP BY 1
) e ON e.i = t.rowid
"""
_REV_INSERT = """
INSERT INTO exp_revisions SELECT library, id, $v, NULL, text, embedding
FROM experiences WHERE library = $lib AND created_version = $v AND id >= $start
"""
_OPS_INSERT = """
INSERT INTO ops (id, library, version, seq, kind, exp_id, after_text, reason, outcome, note, run_id, step,
                 group_id, rollout_ids, call_id, created_at)
SELECT $op0 + id - $start, library, $v, id - $start, 'ADD', id, text, $reason, 'applied', 'bulk add (no dedup)',
       $run_id, $step, $group_id, $rollout_ids, $call_id, $now
FROM experiences WHERE library = $lib AND created_version = $v AND id >= $start
"""


def _check_texts(texts: list[str], max_chars: int) -> list[str]:
    cleaned = [clean_text(t) for t in texts]
    bad = [f"item {n}: {'empty text' if not t else f'{len(t)} characters > {max_chars}'}"
           for n, t in enumerate(cleaned, start=1) if not t or len(t) > max_chars]
    if bad:
        raise StoreError(f"bulk_add: {len(bad)} invalid text(s), nothing written: {'; '.join(bad[:20])}")
    return cleaned


def _vectors(store: ExperienceStore, library: str, texts: list[str], vectors: np.ndarray | None) -> np.ndarray:
    embedder = store.embedder_for(library)
    if vectors is None:
        vectors = embedder.embed(texts)
    vectors = np.ascontiguousarray(normalize_rows(vectors), dtype=np.float32)
    if vectors.shape != (len(texts), embedder.dim):
        raise StoreError(
            f"bulk_add: vectors have shape {vectors.shape}, expected ({len(texts)}, {embedder.dim}) for "
            f"embedding model {embedder.name!r}"
        )
    return vectors


def bulk_add(
    store: ExperienceStore, library: str, texts: list[str], vectors: np.ndarray | None = None, *,
    reason: str = "bulk load", provenance: Provenance | None = None,
) -> ApplyResult:
    """Add `texts` (with precomputed unit `vectors`, or embedded here) as ONE new version, no dedup.

    Vectors must match the library's embedding model size (its embedder's `dim`).
    """
    store._check_writable("bulk add")
    if not texts:
        return ApplyResult(version=store.current_version(library) if library in store.libraries() else 0)
    texts = _check_texts(texts, store.max_text_chars)
    store.ensure_library(library)
    vecs = _vectors(store, library, texts, vectors)
    embedder = store.embedder_for(library)
    prov = provenance or Provenance()
    with store._lock:
        lib = store._library(library)
        start, version, dim = int(lib["next_exp_id"]), int(lib["current_version"]) + 1, vecs.shape[1]
        params = {"lib": library, "start": start, "v": version, "now": utcnow(), "model": embedder.name, "dim": dim}
        _write_bulk(store, library, texts, vecs, params, reason, prov)
        ids = np.arange(start, start + len(texts), dtype=np.int64)
        index = store._indexes.get(library)
        if index is not None:
            index.extend(ids, vecs)
            index.version = version
    return ApplyResult(version=version, new_ids=ids.tolist(), changed=True)


def _run(con, sql: str, params: dict) -> None:
    """Execute with only the named parameters `sql` uses (DuckDB refuses extra ones)."""
    con.execute(sql, {k: v for k, v in params.items() if re.search(rf"\${k}\b", sql)})


def _stage(con, vecs: np.ndarray, texts: list[str]) -> None:
    """Copy the rows into temp tables (committed, so `rowid` is the 0-based position)."""
    flat = vecs.ravel()  # noqa: F841 - read by DuckDB's replacement scan below
    text_arr = np.array(texts, dtype=object)  # noqa: F841
    con.execute("CREATE OR REPLACE TEMP TABLE _bulk_vec AS SELECT * FROM flat")
    con.execute("CREATE OR REPLACE TEMP TABLE _bulk_txt AS SELECT * FROM text_arr")


def _write_bulk(store, library, texts, vecs, params, reason, prov) -> None:
    n, dim = vecs.shape
    _stage(store.con, vecs, texts)
    try:
        with store._tx() as con:
            _run(con, _EXP_INSERT, params)
            _run(con, _REV_INSERT, params)
            _run(con, _OPS_INSERT, {
                **params, "op0": store._next_id("ops"), "reason": reason, "run_id": prov.run_id,
                "step": prov.step, "group_id": prov.group_id, "rollout_ids": prov.rollout_ids,
                "call_id": prov.call_id,
            })
            live = con.execute(
                "SELECT count(*) FROM experiences WHERE library = ? AND status = 'live'", [library]
            ).fetchone()[0]
            con.execute("INSERT INTO versions (library, version, created_at, n_ops, n_live, run_id, step)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [library, params["v"], params["now"], n, live, prov.run_id, prov.step])
            con.execute("UPDATE libraries SET current_version = ?, next_exp_id = ? WHERE name = ?",
                        [params["v"], params["start"] + n, library])
            con.execute("UPDATE libraries SET embed_model = ?, embed_dim = ? WHERE name = ? AND embed_model IS NULL",
                        [params["model"], dim, library])
    finally:
        store.con.execute("DROP TABLE IF EXISTS _bulk_vec")
        store.con.execute("DROP TABLE IF EXISTS _bulk_txt")
