"""Bulk loading: many ADDs as one version, written set-wise (no per-row round trips, no dedup).

For seeding a large library (benchmarks, big imports with dedup off). On DuckDB the experiences go
through its NumPy scans, on Postgres through COPY; their revisions and op records are then one
INSERT ... SELECT each (the same SQL on both), so 100k experiences load in seconds, not minutes.
Every row still gets its op record (ADD, outcome applied) and a revision, like `apply`.
"""

from __future__ import annotations

import re

import numpy as np

from tfgrpo_common.errors import StoreError

from . import pg_copy
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
# the same SQL on both backends: positional parameters, typed where Postgres cannot infer the type
_REV_INSERT = """
INSERT INTO exp_revisions SELECT library, id, ?, NULL, text, embedding
FROM experiences WHERE library = ? AND created_version = ? AND id >= ?
"""
_OPS_INSERT = """
INSERT INTO ops (id, library, version, seq, kind, exp_id, after_text, reason, outcome, note, run_id, step,
                 group_id, rollout_ids, call_id, created_at)
SELECT ? + id - ?, library, ?, id - ?, 'ADD', id, text, CAST(? AS VARCHAR), 'applied', 'bulk add (no dedup)',
       CAST(? AS VARCHAR), CAST(? AS INTEGER), CAST(? AS VARCHAR), CAST(? AS VARCHAR[]), CAST(? AS VARCHAR),
       CAST(? AS TIMESTAMP)
FROM experiences WHERE library = ? AND created_version = ? AND id >= ?
"""
_EXP_COLS = ("library", "id", "text", "status", "created_at", "updated_at", "created_version", "updated_version",
             "embedding")
_EXP_KINDS = ("text", "int4", "text", "text", "timestamp", "timestamp", "int4", "int4", "float4[]")


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
    with store._write_unit():
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
    postgres = store.backend == "postgres"
    if not postgres:
        _stage(store.con, vecs, texts)
    try:
        with store._tx() as con:
            if postgres:
                _copy_experiences(con, params, texts, vecs)
            else:
                _run(con, _EXP_INSERT, params)
            v, start = params["v"], params["start"]
            con.execute(_REV_INSERT, [v, library, v, start])
            con.execute(_OPS_INSERT, [
                store._next_id("ops"), start, v, start, reason, prov.run_id, prov.step, prov.group_id,
                prov.rollout_ids, prov.call_id, params["now"], library, v, start,
            ])
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
        if not postgres:
            store.con.execute("DROP TABLE IF EXISTS _bulk_vec")
            store.con.execute("DROP TABLE IF EXISTS _bulk_txt")


def _copy_experiences(con, params: dict, texts: list[str], vecs: np.ndarray) -> None:
    """Postgres: the new experiences through a binary COPY (inside the bulk load's transaction)."""
    lib, start, v, now = params["lib"], params["start"], params["v"], params["now"]
    rows = ((lib, start + i, text, "live", now, now, v, v, vecs[i]) for i, text in enumerate(texts))
    con.copy_binary("experiences", _EXP_COLS, pg_copy.encode(_EXP_KINDS, rows))
