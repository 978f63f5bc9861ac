"""Copying a library with its whole history between stores: DuckDB -> Postgres -> DuckDB is lossless (every
row of every table that belongs to the library, compared as stored, and the API's view of it), and a copy
that is refused or fails halfway leaves the target exactly as it was."""

from __future__ import annotations

import numpy as np
import pytest

from experience_store import (
    ExperienceStore,
    HashEmbedder,
    Op,
    OpKind,
    Provenance,
    RolloutRow,
)
from experience_store import copy as copy_module
from experience_store.bulk import bulk_add
from experience_store.copy import LIBRARY_TABLES, RUN_TABLES, copy_library, read_library
from tests.storecheck import LESSONS, add, assert_library_consistent
from tfgrpo.errors import StoreError
from tfgrpo_common.chat import CallRecord

PRIOR = {"placement": "system", "token_cap": 512}
ALL_TABLES = [t for t, _, _ in LIBRARY_TABLES] + [t for t, _ in RUN_TABLES]


def _store(location) -> ExperienceStore:
    return ExperienceStore(location, embedder=HashEmbedder())


def _fill(store: ExperienceStore, library: str = "lib") -> str:
    """A library with every kind of history: all op kinds and outcomes, counters, gate, runs and their logs."""
    run = store.create_run(library, "train", {"group_size": 4}, "local")
    prov = {"run_id": run, "step": 0, "group_id": "q1", "rollout_ids": [f"{run}:0:q1:0", f"{run}:0:q1:2"], "call_id": "c1"}
    store.apply(library, [add(t, **prov) for t in LESSONS], prior=PRIOR)
    step1 = Provenance(run_id=run, step=1, group_id="q2")
    store.apply(library, [
        Op(kind=OpKind.UPDATE, target_id=1, text="Turn percentages into decimals before multiplying", provenance=step1),
        Op(kind=OpKind.DELETE, target_id=2, provenance=step1),
        Op(kind=OpKind.ADD, text="Draw a diagram for geometry questions", provenance=step1),
        Op(kind=OpKind.ADD, text="keep units consistent when adding quantities", provenance=step1),  # dup of 3
        Op(kind=OpKind.ADD, text="Problem: two trains. Solution: add the speeds.", exp_kind="example", provenance=step1),
    ])
    store.apply(library, [Op(kind=OpKind.MERGE, merge_ids=[1, 3], text="Decimals first, units consistent")])
    store.apply(library, [Op(kind=OpKind.NONE, reason="nothing to change")])
    store.apply(library, [add("Mind the units of time")], merge_duplicates=True)
    vecs = HashEmbedder().embed([f"bulk lesson number {i}" for i in range(40)])
    bulk_add(store, library, [f"bulk lesson number {i}" for i in range(40)], vecs, reason="seed")
    store.bump_counters_once(library, {1: (3, 1), 4: (2, 0)}, mark=f"{run}:0")
    store.record_gate(library, run_id=run, step=1, base_version=1, new_version=2, n_items=16, score_base=0.5,
                      score_new=0.5625, threshold=0.0, accepted=True, ops=[{"kind": "ADD", "text": "x"}])
    store.add_gate_evidence(library, [1, 4], 0.0625)
    store.add_rollouts([RolloutRow(id=f"{run}:0:q1:{i}", run_id=run, step=0, question_id="q1", question="2+2?",
                                   completion=f"answer {i} ✓", reward=float(i % 2), extra={"injected": [1, 3]})
                        for i in range(4)])
    store.record_many([CallRecord(model="m", stage=s, run_id=run, ts=1000.0 + n, request=[{"role": "user", "content": s}],
                                  response="ok", cost_usd=0.001 * n, meta={"n": n})
                       for n, s in enumerate(("rollout", "extract", "consolidate"))])
    store.record_rejection(run, 1, "extract", "truncated JSON", '{"ops": [')
    store.record_eval(run, library, 2, "gsm8k", "local", {"mean@1": 0.5, "n": 30})
    store.update_run(run, steps=2, status="finished", metrics={"reward_mean": 0.5})
    return run


def _rows(store: ExperienceStore, library: str) -> dict[str, list]:
    """Every stored row of `library`, table by table, as stored (vectors as float32 lists)."""
    return {t: rows.rows for t, rows in read_library(store, library).items()}


def _api_view(store: ExperienceStore, library: str, run: str) -> dict:
    current = store.current_version(library)
    return {
        "versions": store.versions(library),
        "at": [[e.model_dump() for e in store.experiences(library, v)] for v in range(current + 1)],
        "history": [h.model_dump() for h in store.history(library)],
        "deleted": store.get(library, 2).model_dump(),
        "search": [(e.id, round(s, 6)) for e, s in store.search(library, "units decimals", 5)],
        "past_search": [(e.id, round(s, 6)) for e, s in store.search(library, "units", 3, version=1)],
        "prior": store.prior_settings(library, 1),
        "gate": store.gate_decisions(library),
        "run": store.get_run(run),
        "rollouts": store.rollouts(run),
        "calls": store.calls(run_id=run),
        "rejections": store.rejections(run),
        "evals": store.evals(library),
    }


def _everything(store: ExperienceStore) -> dict[str, list]:
    """Every row of every table of the store (to show a target did not change at all)."""
    out = {}
    with store._lock as con:
        for table in ALL_TABLES + ["_migrations"]:
            cur = con.execute(f"SELECT * FROM {table}")
            out[table] = sorted([str(v) for v in row] for row in cur.fetchall())
    return out


def test_copy_duckdb_to_postgres_and_back_is_lossless(tmp_path, pg_url):
    src_path, back_path = tmp_path / "src.duckdb", tmp_path / "back.duckdb"
    with _store(src_path) as src:
        run = _fill(src)
        _fill(src, "other")  # another library in the store: it stays behind
        rows, view = _rows(src, "lib"), _api_view(src, "lib", run)
        with _store(pg_url) as pg:
            result = copy_library(src, pg, "lib")
            assert result.shifted == {} and result.counts["ops"] == len(rows["ops"]) > 10
            assert pg.libraries() == ["lib"]
            assert _rows(pg, "lib") == rows
            assert _api_view(pg, "lib", run) == view
            assert_library_consistent(pg, "lib")
            with _store(back_path) as back:
                copy_library(pg, back, "lib")
                assert _rows(back, "lib") == rows
                assert _api_view(back, "lib", run) == view
            # the copy goes on where the original stopped: next id, next version, same embedding model
            lib = pg._library("lib")
            nxt = pg.apply("lib", [add("A brand new lesson about fractions")])
            assert (nxt.new_ids, nxt.version) == ([lib["next_exp_id"]], lib["current_version"] + 1)
    assert all(rows[t] for t in ALL_TABLES), [t for t in ALL_TABLES if not rows[t]]  # every table was exercised


@pytest.fixture()
def other_db(backend, tmp_path, request):
    """A location on the backend other than this test's (the copy's source)."""
    if backend == "postgres":
        return tmp_path / "source.duckdb"
    return request.getfixturevalue("pg_url")


def test_copy_into_a_target_that_has_the_library_is_refused_and_changes_nothing(store_db, other_db):
    with _store(other_db) as src, _store(store_db) as dst:
        _fill(src)
        dst.apply("lib", [add("The target's own lesson")])
        before = _everything(dst)
        with pytest.raises(StoreError, match="already has a library 'lib'; nothing was copied.*another name"):
            copy_library(src, dst, "lib")
        assert _everything(dst) == before
        assert copy_library(src, dst, "lib", new_name="lib-copy").counts["experiences"] > 0  # under another name


def test_copy_failing_halfway_leaves_the_target_unchanged(store_db, other_db, monkeypatch):
    with _store(other_db) as src, _store(store_db) as dst:
        run = _fill(src)
        dst.apply("keep", [add("The target's own lesson")])
        before = _everything(dst)
        real, written = copy_module._insert, []

        def failing(con, table, rows):
            real(con, table, rows)
            written.append(table)
            if table == "gate_decisions":  # experiences, revisions, versions and ops are in by now
                raise RuntimeError("injected failure halfway through the copy")

        monkeypatch.setattr(copy_module, "_insert", failing)
        with pytest.raises(RuntimeError, match="injected"):
            copy_library(src, dst, "lib")
        assert written[:5] == ["libraries", "experiences", "exp_revisions", "versions", "ops"]
        assert _everything(dst) == before and dst.libraries() == ["keep"]
        monkeypatch.setattr(copy_module, "_insert", real)
        result = copy_library(src, dst, "lib")  # the target is still usable and takes the whole library
        assert result.shifted == {"ops": 1}  # the target's own library has op 1: the copied ops follow it
        got, want = _api_view(dst, "lib", run), _api_view(src, "lib", run)
        assert [h["op_id"] for h in got.pop("history")] == [h["op_id"] + 1 for h in want.pop("history")]
        assert got == want


def test_copy_under_a_new_name_into_the_same_store_shifts_only_taken_ids(store_db):
    with _store(store_db) as store:
        run = _fill(store)
        result = copy_library(store, store, "lib", new_name="lib2")
        assert result.runs_skipped == [run]  # the run is in the store already
        assert set(result.shifted) == {"ops", "gate_decisions", "evals"}
        old, new = store.history("lib"), store.history("lib2")
        assert [h.op_id + result.shifted["ops"] for h in old] == [h.op_id for h in new]
        assert ([h.model_dump(exclude={"op_id", "library"}) for h in old]
                == [h.model_dump(exclude={"op_id", "library"}) for h in new])
        assert [e.text for e in store.experiences("lib2", 2)] == [e.text for e in store.experiences("lib", 2)]
        assert_library_consistent(store, "lib2")
        assert_library_consistent(store, "lib")


def test_vectors_survive_the_round_trip_bit_for_bit(tmp_path, pg_url):
    vecs = np.random.default_rng(5).standard_normal((30, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    with _store(tmp_path / "v.duckdb") as src, _store(pg_url) as pg:
        bulk_add(src, "lib", [f"v{i}" for i in range(30)], vecs)
        copy_library(src, pg, "lib")
        stored = {}
        for name, store in (("duckdb", src), ("postgres", pg)):
            with store._lock as con:
                stored[name] = np.stack(con.execute("SELECT embedding FROM experiences WHERE library = 'lib' "
                                                    "ORDER BY id").fetchnumpy()["embedding"]).astype(np.float32)
        assert stored["duckdb"].shape == (30, 384) and np.allclose(stored["duckdb"], vecs, atol=1e-6)
        assert np.array_equal(stored["postgres"], stored["duckdb"])  # bit for bit
        assert pg.search_vector("lib", vecs[7], 1)[0][0].text == "v7"
