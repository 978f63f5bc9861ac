"""Experience kinds (lessons and worked examples), the prior settings recorded with a version, the gate's
decision log and evidence, and the MERGE duplicate check — on real stores (DuckDB files, Postgres databases)."""

from __future__ import annotations

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from experience_store.io import export_text, import_file

PRIOR = {"placement": "system", "token_cap": 512, "mode": "all", "k_examples": 2}


def _store(path):
    return ExperienceStore(path, embedder=HashEmbedder())


def test_kinds_are_stored_searched_by_kind_and_time_travel(tmp_path, make_db):
    with _store(make_db("s")) as s:
        s.apply("lib", [Op(kind=OpKind.ADD, text="When a rate is given per hour, convert minutes first."),
                        Op(kind=OpKind.ADD, text="Problem: trains meet. Solution: add the speeds ...", exp_kind="example"),
                        Op(kind=OpKind.ADD, text="Problem: apples shared. Solution: divide ...", exp_kind="example")])
        s.apply("lib", [Op(kind=OpKind.UPDATE, target_id=2, text="Problem: two trains meet. Solution: add speeds.")])
        kinds = {e.id: e.kind for e in s.experiences("lib")}
        assert kinds == {1: "lesson", 2: "example", 3: "example"}
        assert {e.kind for e in s.experiences("lib", 1)} == {"lesson", "example"}  # time travel keeps kinds
        hits = s.search("lib", "two trains meet", 5, kind="example")
        assert [e.id for e, _ in hits][0] == 2 and all(e.kind == "example" for e, _ in hits)
        assert [e.id for e, _ in s.search("lib", "trains", 5, version=1, kind="lesson")] == [1]


def test_prior_settings_travel_with_versions_and_exports(tmp_path, make_db):
    a, b = make_db("a"), make_db("b")
    with _store(a) as s:
        s.apply("lib", [Op(kind=OpKind.ADD, text="Check the units before answering.")], prior=PRIOR)
        s.apply("lib", [Op(kind=OpKind.ADD, text="Write each step on its own line.")])  # no settings: inherits
        assert s.prior_settings("lib") == PRIOR and s.prior_settings("lib", 1) == PRIOR
        s.apply("other", [Op(kind=OpKind.ADD, text="A hand-made lesson.")])
        assert s.prior_settings("other") is None
        s.apply("lib", [Op(kind=OpKind.ADD, text="Problem: x. Solution: y.", exp_kind="example")])
        (tmp_path / "lib.jsonl").write_text(export_text(s, "lib", "jsonl"))
    with _store(b) as t:
        import_file(t, "copy", tmp_path / "lib.jsonl")
        assert t.prior_settings("copy") == PRIOR
        assert sorted(e.kind for e in t.experiences("copy")) == ["example", "lesson", "lesson"]


def test_gate_log_and_evidence(tmp_path, make_db):
    g = make_db("g")
    with _store(g) as s:
        s.apply("lib", [Op(kind=OpKind.ADD, text="Check the units before answering.")])
        s.record_gate("lib", run_id="r1", step=0, base_version=1, new_version=None, n_items=32, score_base=0.5,
                      score_new=0.4375, threshold=0.0, accepted=False, ops=[{"kind": "ADD", "text": "Guess."}])
        s.record_gate("lib", run_id="r1", step=1, base_version=1, new_version=2, n_items=32, score_base=0.5,
                      score_new=0.5625, threshold=0.0, accepted=True, ops=[])
        s.add_gate_evidence("lib", [1], 0.0625)
        rows = s.gate_decisions("lib", run_id="r1")
        assert [r["accepted"] for r in rows] == [False, True] and rows[0]["ops"][0]["text"] == "Guess."
        assert abs(rows[0]["delta"] + 0.0625) < 1e-9 and s.get("lib", 1).gate_delta == 0.0625
    with ExperienceStore(g, read_only=True) as r:  # reopened: all persisted
        assert len(r.gate_decisions()) == 2 and r.get("lib", 1).gate_delta == 0.0625


def test_merge_whose_text_duplicates_a_lesson_left_out_is_rejected(tmp_path, make_db):
    with _store(make_db("m")) as s:
        s.apply("lib", [Op(kind=OpKind.ADD, text=t) for t in
                        ("Check the units of every quantity.", "Draw a diagram first.", "List what is known.")])
        res = s.apply("lib", [Op(kind=OpKind.MERGE, merge_ids=[2, 3], text="Check the units of every quantity.")])
        assert not res.changed and res.rejected and res.rejected[0].duplicate_of == 1
        assert len(s.experiences("lib")) == 3
        ok = s.apply("lib", [Op(kind=OpKind.MERGE, merge_ids=[2, 3], text="Draw a diagram and list what is known.")])
        assert ok.changed and [e.id for e in s.experiences("lib")] == [1, 2]
