"""The gate and worked examples, through the real loop (LangGraph, DuckDB, the gateway) with a scripted model
that follows advice: it answers correctly when a helpful lesson is in its prompt and only sometimes otherwise.
A batch that adds the helpful lesson must clear the gate; a batch of useless advice must not."""

from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path

import pytest

from experience_store import ExperienceStore, HashEmbedder
from tasks import data
from tasks.registry import load_task
from tfgrpo.config import ModelConfig, SamplingConfig, TrainConfig
from tfgrpo.errors import ConfigError
from tfgrpo.llm import factory
from tfgrpo.llm.scripted import ScriptedBackend
from tfgrpo.loop.run import load_examples, train
from tfgrpo.prior import Prior

HELPFUL = "When a question has several steps, write each intermediate result before the final answer."
USELESS = "When a question mentions a house number, admire the house before answering anything."
HARMFUL = "When a question has numbers, add one to the result before boxing it."
ANSWERS = {ex.question: ex.answer for ex in load_task("arith").examples("train")}


def advice_follower(lesson: str):
    """A scripted model: rollouts/gate answers are right when HELPFUL is in the prompt, else right on odd
    seeds only; the learner proposes `lesson` and consolidation adds it."""

    def responder(stage, messages, index):
        text = " ".join(str(m.get("content", "")) for m in messages)
        if stage in ("rollout", "gate", "eval"):
            asked = str(messages[-1].get("content", ""))  # the question itself, not the examples' questions
            question = next((q for q in ANSWERS if q in asked), None)
            gold = ANSWERS.get(question, "0")
            seed = index  # replies alternate right/wrong by call order when no lesson helps
            right = HELPFUL in text or (HARMFUL not in text and seed % 2 == 1)
            return f"Step by step: I work it out. The answer is \\boxed{{{gold if right else int(gold) + 1}}}."
        if stage == "extract":
            return ('Assessment: the winner wrote its steps. Comparison: steps. Pattern: word problems.\n'
                    f'{{"pattern": "multi-step word problems", "experiences": ["{lesson}"]}}')
        if stage == "consolidate":
            return f'{{"ops": [{{"op": "ADD", "text": "{lesson}", "from": [1], "reason": "winners did"}}]}}'
        return "The attempt worked step by step."

    return responder


class CountingEmbedder(HashEmbedder):
    """Records the texts it is asked to embed, and whether `ExperienceStore.embed_ahead` asked."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[tuple[str, bool]] = []

    def embed(self, texts):
        frame, ahead = sys._getframe(1), False
        while frame is not None and not ahead:
            ahead, frame = frame.f_code.co_name == "embed_ahead", frame.f_back
        self.texts += [(t, ahead) for t in texts]
        return super().embed(texts)


def run(tmp_path, monkeypatch, lesson: str, model: ModelConfig = ModelConfig(model="scripted"), embedder=None, **kw):
    monkeypatch.setattr(factory, "ScriptedBackend", lambda: ScriptedBackend(advice_follower(lesson)))
    tmp_path.mkdir(parents=True, exist_ok=True)
    db = tmp_path / "gate.duckdb"
    store = ExperienceStore(db, embedder=embedder or HashEmbedder())
    base = dict(task="arith", library="lib", epochs=1, batch_size=2, group_size=4, limit=4, gate_items=6,
                rollout=SamplingConfig(max_tokens=64))
    cfg = TrainConfig(**{**base, **kw})
    res = train(cfg, model, None, store=store, db=db)
    return store, res


def test_gate_accepts_a_batch_that_helps_and_credits_it(tmp_path, monkeypatch):
    store, res = run(tmp_path, monkeypatch, HELPFUL, gate_items=8)
    try:
        assert res.status == "completed", res.error
        decisions = store.gate_decisions("lib", res.run_id)
        assert decisions and decisions[0]["accepted"] and decisions[0]["delta"] > 0
        assert decisions[0]["n_items"] == 8 and decisions[0]["new_version"] == 1
        # 4 items won, none lost: p = 1/16 under the one-sided sign test, below the default alpha 0.1
        first = decisions[0]
        assert (first["gained"], first["lost"]) == (4, 0) and first["p_value"] == pytest.approx(1 / 16)
        assert first["alpha"] == 0.1 and first["item_scores"]["new"] == [1.0] * 8
        assert sum(first["item_scores"]["base"]) == 4
        exps = store.experiences("lib")
        lesson = next(e for e in exps if e.kind == "lesson")
        assert lesson.text == HELPFUL and lesson.gate_delta == pytest.approx(decisions[0]["delta"])
        assert store.prior_settings("lib") == TrainConfig(task="arith").prior_settings()
        # gate calls are in the call log, labelled; a version's slice score is computed once
        gate_calls = [c for c in store.calls(run_id=res.run_id) if c["stage"] == "gate"]
        assert len(gate_calls) == 8 * (1 + len(decisions))  # the base once, then each proposal once
        totals = store.get_run(res.run_id)["metrics"]["totals"]
        assert totals["gate_accepted"] >= 1
    finally:
        store.close()


def test_an_idle_gate_is_no_node_of_its_own_and_the_step_still_records_it_off(tmp_path, monkeypatch):
    """Without a slice the consolidate node commits the step itself (no gate node, no apply node, no checkpoints
    of their own); with one, the gate node runs, then apply (the other tests here)."""
    store, res = run(tmp_path, monkeypatch, HELPFUL, gate_items=0)
    try:
        assert res.status == "completed", res.error
        assert store.get_run(res.run_id)["metrics"]["last_step"]["gate"] == "off"
        assert store.gate_decisions("lib", res.run_id) == []
        assert [e.text for e in store.experiences("lib") if e.kind == "lesson"] == [HELPFUL]
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "gate.duckdb.checkpoints.sqlite") as con:
        nodes = {path.split(", ")[-1] for (path,) in con.execute("SELECT DISTINCT task_path FROM writes")}
    assert {"sample", "rollouts", "consolidate"} <= nodes and not {"gate", "apply"} & nodes, nodes


def test_gate_refuses_a_lead_that_could_be_luck_unless_alpha_is_off(tmp_path, monkeypatch):
    """On 6 items the helpful batch wins 3 and loses none: p = 1/8, more than the default alpha 0.1, so the
    default gate keeps nothing; with --gate-alpha 1 any gain above the threshold passes."""
    store, res = run(tmp_path, monkeypatch, HELPFUL, learn_examples=False)
    try:
        assert res.status == "completed", res.error
        first = store.gate_decisions("lib", res.run_id)[0]
        # 3 of 6 are right without it: winning all 3 others gives p = 1/8 at best, so it is refused unscored
        assert not first["accepted"] and first["n_items"] == 0 and first["p_value"] == pytest.approx(1 / 8)
        assert (first["gained"], first["lost"], first["delta"]) == (0, 0, 0.0)
        assert first["item_scores"]["new"] == [None] * 6 and sum(first["item_scores"]["base"]) == 3
        assert store.experiences("lib") == []
        gate_calls = [c for c in store.calls(run_id=res.run_id) if c["stage"] == "gate"]
        assert len(gate_calls) == 6  # the current library's slice only
    finally:
        store.close()
    store, res = run(tmp_path / "lax", monkeypatch, HELPFUL, learn_examples=False, gate_alpha=1.0)
    try:
        first = store.gate_decisions("lib", res.run_id)[0]
        assert first["accepted"] and first["p_value"] == pytest.approx(1 / 8) and first["alpha"] == 1.0
        assert [e.text for e in store.experiences("lib")] == [HELPFUL]
    finally:
        store.close()


def test_gate_rejects_useless_advice_and_keeps_the_batch_as_data(tmp_path, monkeypatch):
    store, res = run(tmp_path, monkeypatch, USELESS, learn_examples=False, gate_alpha=1.0)
    try:
        assert res.status == "completed", res.error
        decisions = store.gate_decisions("lib", res.run_id)
        assert decisions and not any(d["accepted"] for d in decisions)
        assert all(d["new_version"] is None and d["delta"] <= 0 for d in decisions)
        assert any(op["text"] == USELESS for d in decisions for op in d["ops"])
        assert store.current_version("lib") == 0 and store.experiences("lib") == []
        assert store.get_run(res.run_id)["metrics"]["totals"]["gate_rejected"] == len(decisions)
    finally:
        store.close()


def test_gate_stops_scoring_a_batch_once_it_cannot_pass(tmp_path, monkeypatch):
    """A harmful lesson loses every item the current library solved; after the first such loss no result on
    the items left could give p <= 0.1, so their calls are cancelled and the batch is refused."""
    monkeypatch.setenv("TFGRPO_SCRIPTED_DELAY", "0.02")  # one call at a time, each visibly finished
    store, res = run(tmp_path, monkeypatch, HARMFUL, ModelConfig(model="scripted", concurrency=1),
                     learn_examples=False, gate_items=8)
    try:
        assert res.status == "completed", res.error
        first = store.gate_decisions("lib", res.run_id)[0]
        assert not first["accepted"] and first["lost"] >= 1 and first["gained"] == 0
        assert 0 < first["n_items"] < 8
        new = first["item_scores"]["new"]
        assert sum(x is not None for x in new) == first["n_items"] and None in new
        gate_calls = [c for c in store.calls(run_id=res.run_id) if c["stage"] == "gate"]
        assert len(gate_calls) < 8 + 8  # the current library's 8, then fewer than 8 for the proposal
        assert store.experiences("lib") == []
    finally:
        store.close()


def test_worked_examples_are_winning_rollouts_retrieved_by_similarity(tmp_path, monkeypatch):
    embedder = CountingEmbedder()
    store, res = run(tmp_path, monkeypatch, HELPFUL, gate_items=0, learn_lessons=False, embedder=embedder)
    try:
        assert res.status == "completed", res.error
        # each step's worked examples were embedded while consolidation was asked for, and not again by apply
        written = [h.after for h in store.history("lib") if h.outcome == "applied"]
        assert written and all([ahead for t, ahead in embedder.texts if t == w] == [True] for w in written)
        examples = [e for e in store.experiences("lib") if e.kind == "example"]
        assert examples and all(e.text.startswith("Problem") and "Solution: Step by step" in e.text for e in examples)
        rows = {r.id: r for r in store.rollouts(res.run_id)}
        for h in store.history("lib"):
            if h.outcome == "applied":
                [rid] = h.provenance.rollout_ids
                assert rows[rid].reward == 1.0 and rows[rid].completion in h.after
        question = re.search(r"Problem: (.*)\n", examples[0].text).group(1)
        msgs = Prior.from_store(store, "lib").apply([{"role": "system", "content": "Solve."},
                                                     {"role": "user", "content": question}])
        assert "Worked examples of similar problems" in msgs[0]["content"] and question in msgs[0]["content"]
    finally:
        store.close()


def test_gate_slice_is_held_out_and_refused_when_too_small():
    cfg = TrainConfig(task="arith", gate_items=8, limit=None)
    _, train_items, gate = load_examples(cfg)
    assert len(gate) == 8 and not set(train_items) & {ex.id for ex in gate}
    with pytest.raises(ConfigError, match="the gate needs"):
        load_examples(TrainConfig(task="arith", gate_items=100_000))
    with pytest.raises(ConfigError, match="test split"):
        load_examples(TrainConfig(task="arith", split="test", gate_items=4))


def test_a_carved_task_trains_and_gates_on_its_own_distribution_outside_its_test_items():
    if not (data.resolve_data_dir() or Path("/nonexistent")).joinpath("math500").is_dir():
        pytest.skip("the shared MATH-500 file is not on this machine")
    task, train_items, gate = load_examples(TrainConfig(task="math500-hard", gate_items=32, limit=64))
    test_ids = {ex.id for ex in task.examples("test")}
    assert len(train_items) == 64 and len(gate) == 32
    assert not (set(train_items) | {ex.id for ex in gate}) & test_ids


def test_a_run_started_before_the_significance_test_resumes_with_the_gate_it_started_with(tmp_path):
    from tfgrpo.loop.run import start_or_resume

    with ExperienceStore(tmp_path / "old.duckdb", embedder=HashEmbedder()) as store:
        store.ensure_library("lib")
        old = TrainConfig(task="arith", library="lib").model_dump(mode="json")
        del old["gate_alpha"]
        model = ModelConfig(model="scripted").model_dump(mode="json")
        run_id = store.create_run("lib", "train", {"train": old, "policy": model, "learner": model}, "scripted")
        got_id, cfg, _, _ = start_or_resume(store, TrainConfig(task="arith", library="lib"),
                                            ModelConfig(model="scripted"), ModelConfig(model="scripted"), True)
        assert got_id == run_id and cfg.gate_alpha == 1.0
        assert TrainConfig(task="arith").gate_alpha == 0.1  # new runs get the significance test


def test_can_pass_is_false_only_when_no_scores_of_the_other_items_could_pass():
    """The early stop's rule on F1-like scores (the sign-flip test, not the binomial): whenever it says a batch
    cannot pass, no completion of the unscored items passes, including the best one."""
    import numpy as np

    from tfgrpo.loop.gate import can_pass, passes

    rng = np.random.default_rng(3)
    said_no = 0
    for _ in range(300):
        n = int(rng.integers(4, 12))
        base = list(np.round(rng.random(n), 2))
        new = list(np.round(np.clip(np.array(base) + rng.normal(0.1, 0.3, n), 0, 1), 2))
        k = int(rng.integers(0, n))
        scored = {i: new[i] for i in range(k)}
        if can_pass(base, scored, 0.0, 0.2):
            continue
        said_no += 1
        for _ in range(5):
            rest = list(np.round(rng.random(n - k), 2))
            assert not passes(base, new[:k] + rest, 0.0, 0.2)["accepted"]
        assert not passes(base, new[:k] + [1.0] * (n - k), 0.0, 0.2)["accepted"]
    assert said_no > 20


def test_cli_refuses_a_gate_slice_too_small_for_its_alpha_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from tfgrpo.cli import app

    db = tmp_path / "g.duckdb"
    r = CliRunner().invoke(app, ["train", "--task", "arith", "--model", "scripted", "--library", "x",
                                 "--gate-items", "3", "--db", str(db)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "a gate slice of 3 items can never show p <= 0.1" in " ".join(r.output.split())
    assert "--gate-items 4 or more" in " ".join(r.output.split()) and not db.exists()


def test_a_gate_call_that_fails_is_left_out_not_scored_as_a_loss(tmp_path, monkeypatch):
    """On a slow machine the proposed library's gate calls can time out; such an item has no score, so its
    pair is left out of the paired test (and counted), never read as a loss of the proposal."""
    from tfgrpo.errors import LLMError

    follow = advice_follower(HELPFUL)
    failed: list[int] = []

    def flaky(stage, messages, index):
        text = " ".join(str(m.get("content", "")) for m in messages)
        if stage == "gate" and HELPFUL in text and len(failed) < 2:
            failed.append(index)
            raise LLMError("scripted: no answer within 300s")
        return follow(stage, messages, index)

    monkeypatch.setattr(factory, "ScriptedBackend", lambda: ScriptedBackend(flaky))
    db = tmp_path / "gate.duckdb"
    with ExperienceStore(db, embedder=HashEmbedder()) as store:
        cfg = TrainConfig(task="arith", library="lib", epochs=1, batch_size=2, group_size=4, limit=4, gate_items=8,
                          gate_alpha=1.0, learn_examples=False, rollout=SamplingConfig(max_tokens=64))
        res = train(cfg, ModelConfig(model="scripted"), None, store=store, db=db)
        assert res.status == "completed", res.error
        first = store.gate_decisions("lib", res.run_id)[0]
        assert len(failed) == 2 and first["item_scores"]["new"].count(None) == 2
        assert first["n_items"] == 6 and first["lost"] == 0 and first["accepted"]
        assert first["score_new"] == 1.0  # the 6 compared items, all right with the helpful lesson


def test_passes_leaves_out_pairs_with_a_failed_call():
    from tfgrpo.loop.gate import describe, passes

    d = passes([1.0, 0.0, 0.0, None, 1.0], [None, 1.0, 1.0, 0.0, 1.0], 0.0, 1.0)
    assert (d["n_items"], d["failed"], d["gained"], d["lost"]) == (3, 2, 2, 0) and d["accepted"]
    assert d["score_base"] == pytest.approx(1 / 3) and d["score_new"] == 1.0
    assert "2 item(s) left out, their call failed" in describe(d, 0.0, 1.0)
    none = passes([None, 1.0], [1.0, None], 0.0, 1.0)
    assert not none["accepted"] and none["n_items"] == 0 and none["failed"] == 2
