"""Pruning by evidence: the experience with the lowest win rate in mixed-group prompts is proposed for DELETE
(unit tests of the choice), and through the real loop (LangGraph, DuckDB, the gate) with a scripted model that
a harmful lesson misleads: the gate keeps the deletion of the harmful lesson, and with pruning off nothing
is deleted."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import ValidationError

from experience_store import Experience, ExperienceStore, HashEmbedder, Op, OpKind
from tests.loop.test_gate import ANSWERS, HELPFUL, advice_follower
from tfgrpo.config import ModelConfig, SamplingConfig, TrainConfig
from tfgrpo.llm import factory
from tfgrpo.llm.scripted import ScriptedBackend
from tfgrpo.loop.prune import prune_op
from tfgrpo.loop.run import train

HARMFUL = "When a question asks for a total, add one to the result before writing the final answer."
NEW = "When a question lists several amounts, write each one down before combining them."


def exp(i: int, seen: int, won: int, gate: float = 0.0) -> Experience:
    now = datetime(2026, 1, 1)
    return Experience(library="lib", id=i, text=f"lesson {i}", created_at=now, updated_at=now, created_version=1,
                      updated_version=1, times_injected=seen, times_won=won, gate_delta=gate)


def choose(exps, ops=(), min_seen=10):
    return prune_op(list(exps), list(ops), min_seen=min_seen, run_id="r", step=3)


def test_the_lowest_win_rate_with_enough_evidence_is_proposed():
    op = choose([exp(1, 20, 15), exp(2, 20, 4), exp(3, 20, 10)])
    assert op.kind == OpKind.DELETE and op.target_id == 2
    assert op.reason.startswith("evidence: in 20 prompts of mixed groups, 4 won")
    assert (op.provenance.run_id, op.provenance.step) == ("r", 3)


@pytest.mark.parametrize("exps,ops,min_seen", [
    ([exp(1, 20, 15), exp(2, 20, 4)], (), 0),                       # off
    ([exp(1, 20, 15), exp(2, 9, 0)], (), 10),                       # too little evidence on the weak one
    ([exp(1, 20, 15)], (), 10),                                     # nothing to compare with
    ([exp(1, 20, 15), exp(2, 20, 4, gate=0.05)], (), 10),           # the gate credited it
    ([exp(1, 20, 15), exp(2, 20, 4)], (Op(kind=OpKind.UPDATE, target_id=2, text="better"),), 10),  # changed now
    ([exp(1, 20, 10), exp(2, 20, 10)], (), 10),                     # a tie says nothing against either
])
def test_no_proposal_without_evidence_against_a_candidate(exps, ops, min_seen):
    assert choose(exps, ops, min_seen) is None


def test_pruning_needs_the_gate():
    with pytest.raises(ValidationError, match="pruning by evidence needs the gate"):
        TrainConfig(task="arith", prune_after=5, gate_items=0)


def misled(lesson: str):
    """Right when HELPFUL is in the prompt (else on odd calls), always wrong when HARMFUL is."""
    inner = advice_follower(lesson)

    def responder(stage, messages, index):
        text = " ".join(str(m.get("content", "")) for m in messages)
        if stage in ("rollout", "gate", "eval") and HARMFUL in text:
            asked = str(messages[-1].get("content", ""))
            gold = next((a for q, a in ANSWERS.items() if q in asked), "0")
            return f"Step by step. The answer is \\boxed{{{int(gold) + 1}}}."
        return inner(stage, messages, index)

    return responder


def seeded_run(tmp_path, monkeypatch, prune_after: int):
    """One step (4 questions, G=4, a 6-question gate) on a library holding HELPFUL and HARMFUL, with evidence
    against HARMFUL from an earlier run."""
    db = tmp_path / "prune.duckdb"
    store = ExperienceStore(db, embedder=HashEmbedder())
    store.apply("lib", [Op(kind=OpKind.ADD, text=HELPFUL), Op(kind=OpKind.ADD, text=HARMFUL)])
    store.bump_counters_once("lib", {1: (12, 9), 2: (12, 1)}, mark="seed")
    monkeypatch.setattr(factory, "ScriptedBackend", lambda: ScriptedBackend(misled(NEW)))
    cfg = TrainConfig(task="arith", library="lib", epochs=1, batch_size=4, group_size=4, limit=4, gate_items=6,
                      rollout=SamplingConfig(max_tokens=64), prune_after=prune_after)
    return store, train(cfg, ModelConfig(model="scripted"), None, store=store, db=db)


def test_the_gate_keeps_the_deletion_of_a_lesson_the_evidence_names(tmp_path, monkeypatch):
    store, res = seeded_run(tmp_path, monkeypatch, prune_after=10)
    try:
        assert res.status == "completed", res.error
        [decision] = store.gate_decisions("lib", res.run_id)
        deletes = [o for o in decision["ops"] if o["kind"] == "DELETE"]
        assert [o["target_id"] for o in deletes] == [2] and deletes[0]["reason"].startswith("evidence:")
        assert decision["accepted"] and decision["delta"] > 0
        live = {e.id: e.text for e in store.experiences("lib")}
        assert 2 not in live and live[1] == HELPFUL
        [deleted] = [h for h in store.history("lib", 2) if h.outcome == "applied" and h.kind == OpKind.DELETE]
        assert deleted.provenance.run_id == res.run_id and deleted.reason.startswith("evidence:")
    finally:
        store.close()


def test_without_pruning_the_harmful_lesson_stays(tmp_path, monkeypatch):
    store, res = seeded_run(tmp_path, monkeypatch, prune_after=0)
    try:
        assert res.status == "completed", res.error
        assert all(o["kind"] != "DELETE" for d in store.gate_decisions("lib", res.run_id) for o in d["ops"])
        assert 2 in {e.id for e in store.experiences("lib")}
    finally:
        store.close()


@pytest.mark.real
def test_real_embedded_model_gates_an_evidence_deletion(smollm2_server, tmp_path):
    """Policy and gate = real SmolLM2 over HTTP (learner scripted): the evidence DELETE is proposed, scored by
    the gate with the real model, recorded with its scores, and the library follows the gate's decision."""
    db = tmp_path / "prune-real.duckdb"
    with ExperienceStore(db, embedder=HashEmbedder()) as store:
        store.apply("lib", [Op(kind=OpKind.ADD, text=HELPFUL), Op(kind=OpKind.ADD, text=HARMFUL)])
        store.bump_counters_once("lib", {1: (12, 9), 2: (12, 1)}, mark="seed")
        cfg = TrainConfig(task="arith", library="lib", epochs=1, batch_size=2, group_size=2, limit=2, gate_items=2,
                          gate_alpha=1.0, rollout=SamplingConfig(max_tokens=64), prune_after=10)
        res = train(cfg, ModelConfig(model="local:smollm2"), ModelConfig(model="scripted"), store=store, db=db)
        assert res.status in ("completed", "nothing_learned"), res.error
        [decision] = store.gate_decisions("lib", res.run_id)
        assert [o["target_id"] for o in decision["ops"] if o["kind"] == "DELETE"] == [2]
        # the current library is scored on both items; the proposal on those scored before it could not pass
        scores = decision["item_scores"]
        assert len(scores["base"]) == 2 and 0.0 <= decision["score_base"] <= 1.0
        assert decision["n_items"] == sum(x is not None for x in scores["new"]) <= 2
        gate_calls = [c for c in store.calls(run_id=res.run_id) if c["stage"] == "gate"]
        assert 2 + decision["n_items"] <= len(gate_calls) <= 4  # a call may finish as the rest are cancelled
        assert all(c["completion_tokens"] > 0 for c in gate_calls)
        assert (2 in {e.id for e in store.experiences("lib")}) != decision["accepted"]


def test_cli_refuses_pruning_without_the_gate_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from tfgrpo.cli import app

    r = CliRunner().invoke(app, ["train", "--task", "arith", "--model", "scripted", "--library", "x",
                                 "--prune-after", "5", "--gate-items", "0", "--db", str(tmp_path / "p.duckdb")])
    assert r.exit_code == 2 and "pruning by evidence needs the gate" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "p.duckdb").exists() or ExperienceStore(tmp_path / "p.duckdb").libraries() == []
