"""Op batches on real stores (a DuckDB file and a Postgres database): versions, atomicity, time travel, diff,
merge, dedup, search."""

from __future__ import annotations

import hashlib

import pytest

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind, Provenance, Version
from experience_store import write as write_module
from tests.storecheck import LESSONS, add
from tfgrpo.errors import StoreError


@pytest.fixture()
def db(store_db):
    return store_db


@pytest.fixture()
def store(db):
    with ExperienceStore(db, embedder=HashEmbedder()) as s:
        yield s




# -- versions, ops, atomicity --------------------------------------------------------------------
def test_new_library_is_empty_at_version_zero(store):
    store.ensure_library("fresh")
    store.ensure_library("fresh")
    assert store.current_version("fresh") == 0
    assert store.experiences("fresh") == []
    assert store.search("fresh", "anything", 3) == []
    with pytest.raises(StoreError, match="no library 'missing'.*fresh"):
        store.current_version("missing")
    with pytest.raises(StoreError, match="invalid library name"):
        store.ensure_library("bad name!")


def test_a_library_created_between_the_check_and_the_write_is_left_as_it_is(store, monkeypatch):
    """`ensure_library` checks outside its transaction, then again inside it (another writer may have created the
    library in between): the second check is what keeps the plain INSERT from a duplicate key."""
    store.ensure_library("raced")
    store.apply("raced", [add(LESSONS[0])])
    monkeypatch.setattr(store, "_rows", lambda sql, params=(): [] if "FROM libraries" in sql else [])
    store.ensure_library("raced")  # the first check sees nothing, as if another process had not committed yet
    monkeypatch.undo()
    assert store.current_version("raced") == 1 and [e.text for e in store.experiences("raced")] == [LESSONS[0]]


def test_each_batch_is_one_version_and_ids_are_never_reused(store):
    r1 = store.apply("lib", [add(t) for t in LESSONS])
    assert (r1.version, r1.new_ids, r1.changed) == (1, [1, 2, 3], True)
    r2 = store.apply("lib", [Op(kind=OpKind.DELETE, target_id=3), Op(kind=OpKind.NONE, reason="nothing")])
    assert r2.version == 2
    r3 = store.apply("lib", [add("Draw a diagram for geometry questions")])
    assert r3.new_ids == [4]  # 3 is deleted but never handed out again
    assert store.get("lib", 3).status == "deleted"
    versions = [Version(**v) for v in store.versions("lib")]
    assert [(v.version, v.n_live, v.n_ops) for v in versions] == [(1, 3, 3), (2, 2, 2), (3, 3, 1)]


def test_none_only_batch_makes_no_version(store):
    store.apply("lib", [add(LESSONS[0])])
    result = store.apply("lib", [Op(kind=OpKind.NONE, reason="keep all")])
    assert (result.version, result.changed) == (1, False)
    assert store.history("lib")[-1].outcome == "noop"


def test_step_version_names_the_version_a_runs_step_left_or_none(store):
    """How a resumed step knows its op batch is already in: the version its op rows were written at, also when
    the batch changed nothing (a duplicate, rejected)."""
    def op(text: str, run: str, step: int) -> Op:
        return Op(kind=OpKind.ADD, text=text, provenance=Provenance(run_id=run, step=step))

    store.apply("lib", [op(LESSONS[0], "r1", 0), op(LESSONS[1], "r1", 0)])
    store.apply("lib", [op(LESSONS[2], "r2", 0)])
    rejected = store.apply("lib", [op(LESSONS[0], "r1", 1)], dedup=True)
    assert rejected.changed is False and rejected.version == 2
    assert store.step_version("lib", "r1", 0) == 1 and store.step_version("lib", "r2", 0) == 2
    assert store.step_version("lib", "r1", 1) == 2  # written, nothing changed: still "already applied"
    assert store.step_version("lib", "r1", 2) is None and store.step_version("lib", "r3", 0) is None
    with pytest.raises(StoreError, match="no library 'nope'"):
        store.step_version("nope", "r1", 0)


def test_invalid_batch_writes_nothing(store):
    store.apply("lib", [add(t) for t in LESSONS])
    bad = [
        add("A new and valid lesson about fractions"),
        Op(kind=OpKind.DELETE, target_id=2),
        Op(kind=OpKind.UPDATE, target_id=2, text="update after delete"),
        Op(kind=OpKind.UPDATE, target_id=99, text="unknown id"),
        add("x" * 2001),
    ]
    with pytest.raises(StoreError) as err:
        store.apply("lib", bad)
    msg = str(err.value)
    assert "nothing was written" in msg
    assert "op 3 (UPDATE): experience 2 is deleted" in msg
    assert "op 4 (UPDATE): unknown experience id 99" in msg
    assert "op 5 (ADD): text has 2001 characters" in msg
    assert store.current_version("lib") == 1
    assert len(store.experiences("lib")) == 3
    assert len(store.history("lib")) == 3
    with pytest.raises(ValueError, match="non-empty"):
        Op(kind=OpKind.ADD, text="   ")


def test_crash_mid_transaction_keeps_previous_version(store, monkeypatch):
    store.apply("lib", [add(t) for t in LESSONS])
    before = [(e.id, e.text) for e in store.experiences("lib")]
    hits_before = store.search("lib", "units", 3)
    real = write_module.write_step
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected failure mid-batch")
        return real(*args, **kwargs)

    monkeypatch.setattr(write_module, "write_step", failing)
    with pytest.raises(RuntimeError, match="injected"):
        store.apply("lib", [
            Op(kind=OpKind.UPDATE, target_id=1, text="Turn percentages into fractions"),
            Op(kind=OpKind.DELETE, target_id=2),
            add("Estimate the answer before computing it"),
        ])
    monkeypatch.setattr(write_module, "write_step", real)
    assert store.current_version("lib") == 1
    assert [(e.id, e.text) for e in store.experiences("lib")] == before
    assert store.search("lib", "units", 3) == hits_before
    assert len(store.history("lib")) == 3
    # the store still works and the next batch gets the next version and next id
    result = store.apply("lib", [add("Estimate the answer before computing it")])
    assert (result.version, result.new_ids) == (2, [4])


def test_time_travel_and_diff(store):
    store.apply("lib", [add(t) for t in LESSONS])  # v1
    store.apply("lib", [
        Op(kind=OpKind.UPDATE, target_id=1, text="Convert percents to decimals first"),
        Op(kind=OpKind.UPDATE, target_id=1, text="Convert percentages to decimals, then multiply"),
    ])  # v2: two updates of one id in one batch
    store.apply("lib", [Op(kind=OpKind.DELETE, target_id=2), add("Draw a picture")])  # v3
    v1 = {e.id: e.text for e in store.experiences("lib", 1)}
    v2 = {e.id: e.text for e in store.experiences("lib", 2)}
    v3 = {e.id: e.text for e in store.experiences("lib", 3)}
    assert v1 == dict(enumerate(LESSONS, start=1))
    assert v2[1] == "Convert percentages to decimals, then multiply" and v2[2] == LESSONS[1]
    assert set(v3) == {1, 3, 4}
    assert store.experiences("lib", 0) == []
    d = store.diff("lib", 1, 3)
    assert [e.id for e in d["added"]] == [4]
    assert [e.id for e in d["removed"]] == [2]
    assert [(a.text, b.text) for a, b in d["changed"]] == [(LESSONS[0], "Convert percentages to decimals, then multiply")]
    back = store.diff("lib", 3, 1)
    assert [e.id for e in back["added"]] == [2] and [e.id for e in back["removed"]] == [4]
    assert store.search("lib", "question final answer", 1, version=1)[0][0].id == 2
    assert all(e.id != 2 for e, _ in store.search("lib", "question final answer", 3))
    with pytest.raises(StoreError, match="no version 7; its versions are 0..3"):
        store.experiences("lib", 7)


def test_merge_into_first_id(store):
    store.apply("lib", [add(t) for t in LESSONS])
    store.bump_counters("lib", [1], injected=3, wins=1)
    store.bump_counters("lib", [2], injected=2, wins=2)
    result = store.apply("lib", [Op(kind=OpKind.MERGE, merge_ids=[1, 2], text="Merged lesson on reading and percents")])
    merged, gone = store.get("lib", 1), store.get("lib", 2)
    assert merged.text == "Merged lesson on reading and percents" and merged.status == "live"
    assert (merged.times_injected, merged.times_won, merged.support) == (5, 3, 2)
    assert (gone.status, gone.merged_into) == ("deleted", 1)
    assert result.applied[0].before == f"{LESSONS[0]}\n{LESSONS[1]}"
    assert [e.id for e in store.experiences("lib")] == [1, 3]
    assert [r.kind for r in store.history("lib", 2)] == [OpKind.ADD, OpKind.MERGE]
    with pytest.raises(StoreError, match="not in library"):
        store.bump_counters("lib", [1, 42], injected=1)


def test_counter_bump_once_per_mark(store):
    store.apply("lib", [add(t) for t in LESSONS[:2]])
    assert store.bump_counters_once("lib", {1: (3, 1), 2: (1, 0)}, mark="run-a:0")
    assert not store.bump_counters_once("lib", {1: (3, 1), 2: (1, 0)}, mark="run-a:0")  # a resumed step
    assert store.bump_counters_once("lib", {1: (1, 1)}, mark="run-a:1")
    with pytest.raises(StoreError):
        store.bump_counters_once("no-such-lib", {1: (1, 0)}, mark="run-a:0")
    e1, e2 = store.get("lib", 1), store.get("lib", 2)
    assert (e1.times_injected, e1.times_won, e2.times_injected, e2.times_won) == (4, 2, 1, 0)
    assert store.current_version("lib") == 1  # counters are not versioned
    store.apply("lib", [Op(kind=OpKind.DELETE, target_id=2)])
    assert store.bump_counters_once("lib", {1: (1, 0), 2: (5, 5)}, mark="run-a:2")  # 2 is deleted: skipped
    assert store.get("lib", 1).times_injected == 5 and store.get("lib", 2).times_injected == 1


def test_history_keeps_provenance(store):
    prov = dict(run_id="run-1", step=4, group_id="q17", rollout_ids=["run-1:4:q17:0", "run-1:4:q17:3"], call_id="c9")
    store.apply("lib", [add(LESSONS[0], **prov)])
    store.apply("lib", [Op(kind=OpKind.UPDATE, target_id=1, text="Convert percentages first", reason="sharper",
                           provenance=Provenance(run_id="run-1", step=5))])
    hist = store.history("lib", 1)
    assert [(h.kind, h.version) for h in hist] == [(OpKind.ADD, 1), (OpKind.UPDATE, 2)]
    assert hist[0].provenance.model_dump() == prov
    assert (hist[1].before, hist[1].after, hist[1].reason) == (LESSONS[0], "Convert percentages first", "sharper")
    with pytest.raises(StoreError, match="no experience 5 in library 'lib'"):
        store.history("lib", 5)


def test_dedup_with_hash_embedder_rejects_and_can_merge(store):
    store.apply("lib", [add(LESSONS[0])])
    result = store.apply("lib", [add("convert percentages to decimals before multiplying!"), add(LESSONS[2])])
    assert result.new_ids == [2]
    assert [(r.duplicate_of, r.similarity) for r in result.rejected] == [(1, 1.0)]
    assert store.history("lib", 1)[-1].outcome == "rejected"
    again = store.apply("lib", [add("Convert percentages to decimals before multiplying.")], merge_duplicates=True)
    assert (again.changed, again.version, again.rejected) == (False, 2, [])
    assert again.applied[0].kind == OpKind.MERGE and again.applied[0].duplicate_of == 1
    assert store.get("lib", 1).support == 2 and store.get("lib", 1).text == LESSONS[0]
    # a duplicate within one batch is caught too, and dedup=False stores it anyway
    twice = store.apply("lib", [add("Sketch the triangle"), add("sketch the triangle")])
    assert twice.new_ids == [3] and twice.rejected[0].duplicate_of == 3
    forced = store.apply("lib", [add("Sketch the triangle")], dedup=False)
    assert forced.new_ids == [4]


def test_the_records_apply_returns_are_what_the_history_reads_back(store):
    """`apply` builds its op records from the rows it wrote instead of reading them back: applied, merged, no-op
    and rejected records alike, with their provenance, similarity and time, equal the stored ones."""
    prov = Provenance(run_id="run-1", step=2, group_id="q3", rollout_ids=["a", "b"], call_id="c1")
    store.apply("lib", [add(LESSONS[0]), add(LESSONS[1])])
    result = store.apply("lib", [
        Op(kind=OpKind.UPDATE, target_id=1, text="Convert percentages first", reason="sharper", provenance=prov),
        add(LESSONS[1] + "!", **prov.model_dump()),  # a duplicate of 2: rejected, with its similarity
        Op(kind=OpKind.DELETE, target_id=2, reason="wrong"),
    ])
    returned = sorted(result.applied + result.noops, key=lambda r: r.op_id)
    stored = {h.op_id: h for h in store.history("lib") if h.version == result.version}
    assert returned and all(r == stored[r.op_id] for r in returned)
    assert {r.outcome for r in stored.values()} >= {"applied", "rejected"}
    [rejected] = [h for h in stored.values() if h.outcome == "rejected"]
    assert (rejected.duplicate_of, rejected.similarity) == (result.rejected[0].duplicate_of,
                                                             result.rejected[0].similarity)
    assert rejected.provenance == prov


def test_search_token_cap_and_counting(store):
    long_text = "Units matter: " + "always write the units next to every number " * 8
    store.apply("lib", [add(long_text), add("Check units"), add("Mind the units of time")])
    assert store.count_tokens("Check units") == 2
    full = store.search("lib", "units", 3)
    assert len(full) == 3 and full[0][1] >= full[1][1] >= full[2][1]
    capped = store.search("lib", "units", 3, token_cap=12)
    assert {e.id for e, _ in capped} == {2, 3}
    assert sum(store.count_tokens(e.text) for e, _ in capped) <= 12
    assert store.search("lib", "units", 3, token_cap=0) == []


def test_embedder_mismatch_is_refused(db):
    with ExperienceStore(db, embedder=HashEmbedder()) as s:
        s.apply("lib", [add(LESSONS[0])])
    with ExperienceStore(db, embedder=HashEmbedder(dim=64)) as s, pytest.raises(StoreError, match="hash-bow-384"):
        s.search("lib", "percent", 1)


def test_hash_embedder_is_deterministic_and_normalized():
    a = HashEmbedder().embed(["Convert units first", "Convert units first", ""])
    assert a.shape == (3, 384)
    assert (a[0] == a[1]).all() and abs(float(a[0] @ a[0]) - 1) < 1e-5 and float(abs(a[2]).sum()) == 0.0


def test_file_bytes_stable_when_read_only(tmp_path):  # about the DuckDB file itself
    db = tmp_path / "store.duckdb"
    with ExperienceStore(db, embedder=HashEmbedder()) as s:
        s.apply("lib", [add(LESSONS[0])])
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    with ExperienceStore(db, read_only=True) as s:
        s.experiences("lib")
        s.history("lib")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest


def test_bad_batch_on_a_new_library_leaves_no_library(store):
    with pytest.raises(StoreError, match="unknown experience id 5"):
        store.apply("typo", [Op(kind=OpKind.DELETE, target_id=5)])
    with pytest.raises(StoreError, match="op 1 is malformed"):
        store.apply("typo", [{"kind": "ADD"}])
    assert store.libraries() == []


def test_dedup_sees_the_batch_own_deletes_and_updates(store):
    store.apply("lib", [add(t) for t in LESSONS])
    result = store.apply("lib", [
        Op(kind=OpKind.DELETE, target_id=1),
        add(LESSONS[0]),  # its twin was deleted just before: stored again, under a new id
        Op(kind=OpKind.UPDATE, target_id=2, text="Underline the question's unknown"),
        add(LESSONS[1]),  # the old text of 2 is no longer live: stored
        add("underline the question's unknown"),  # duplicates 2's new text
    ])
    assert result.new_ids == [4, 5]
    assert [(r.op.text, r.duplicate_of) for r in result.rejected] == [("underline the question's unknown", 2)]


def test_update_that_duplicates_another_experience_is_rejected(store):
    store.apply("lib", [add(t) for t in LESSONS[:2]])
    result = store.apply("lib", [Op(kind=OpKind.UPDATE, target_id=2, text=LESSONS[0].upper())])
    assert (result.changed, result.version) == (False, 1)
    [rej] = result.rejected
    assert rej.duplicate_of == 1 and "old text is kept" in rej.reason
    assert store.get("lib", 2).text == LESSONS[1]
    # rewording an experience close to its own old text is still an ordinary update
    ok = store.apply("lib", [Op(kind=OpKind.UPDATE, target_id=1, text=LESSONS[0] + " first")])
    assert ok.changed and store.get("lib", 1).text == LESSONS[0] + " first"


def test_two_stores_on_one_file_in_one_process_stay_consistent(db):
    with ExperienceStore(db, embedder=HashEmbedder()) as a, ExperienceStore(db, embedder=HashEmbedder()) as b:
        a.apply("lib", [add("alpha beta")])
        assert [e.text for e, _ in a.search("lib", "alpha", 5)] == ["alpha beta"]
        b.apply("lib", [add("alpha gamma")])
        assert sorted(e.text for e, _ in a.search("lib", "alpha", 5)) == ["alpha beta", "alpha gamma"]
        b.bump_counters("lib", [1], injected=2)
        a.apply("lib", [add("delta")])
        assert a.search("lib", "alpha beta", 1)[0][0].times_injected == 2

