"""The Training-Free GRPO loop on the scripted model (control flow) and on the embedded model (real path)."""

from __future__ import annotations

import json

import pytest

from experience_store import ExperienceStore, HashEmbedder
from tests.conftest import PAPER_LOOP
from tfgrpo.llm.budget import BudgetConfig
from tfgrpo.config import ModelConfig, SamplingConfig, TrainConfig
from tfgrpo.loop.run import train

SCRIPTED = ModelConfig(model="scripted")


def cfg(**kw) -> TrainConfig:
    base = dict(task="arith", library="lib", epochs=1, batch_size=2, group_size=2, limit=4, **PAPER_LOOP,
                rollout=SamplingConfig(max_tokens=64))
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture()
def store(tmp_db):
    s = ExperienceStore(tmp_db, embedder=HashEmbedder())
    yield s
    s.close()


def test_scripted_run_records_rollouts_ops_and_provenance(store, tmp_db):
    res = train(cfg(), SCRIPTED, None, store=store, db=tmp_db)
    assert res.status == "completed", res.error
    run = store.get_run(res.run_id)
    assert run["status"] == "completed" and run["steps"] == 2
    rows = store.rollouts(res.run_id)
    assert len(rows) == 8 and {r.step for r in rows} == {0, 1}
    exps = store.experiences("lib")
    assert exps, "the scripted learner proposes an ADD; it must land"
    [first] = [h for h in store.history("lib", exps[0].id) if h.outcome == "applied"][:1]
    assert first.provenance.run_id == res.run_id and first.provenance.step == 0
    assert set(first.provenance.rollout_ids) <= {r.id for r in rows} and first.provenance.rollout_ids
    calls = store.calls(run_id=res.run_id)
    stages = {c["stage"] if isinstance(c, dict) else c.stage for c in calls}
    assert {"rollout", "summarize", "extract", "consolidate"} <= stages


def test_group_of_one_refused_with_fix():
    with pytest.raises(Exception, match="group size must be >= 2"):
        cfg(group_size=1)
    assert cfg(group_size=1, allow_group_of_one=True).group_size == 1


def test_budget_stops_cleanly_and_resume_finishes(store, tmp_db):
    res = train(cfg(budget=BudgetConfig(max_calls=5)), SCRIPTED, None, store=store, db=tmp_db)
    assert res.status == "stopped_budget" and "--max-calls" in res.error
    assert store.get_run(res.run_id)["llm_calls"] <= 5
    v_before = store.current_version("lib")
    res2 = train(cfg(budget=BudgetConfig(max_calls=1000)), SCRIPTED, None, store=store, db=tmp_db, resume=True)
    assert res2.run_id == res.run_id and res2.status == "completed"
    assert len(store.rollouts(res.run_id)) == 8
    assert store.current_version("lib") >= v_before


def _responder_factory(consolidate_reply):
    from tfgrpo.llm.scripted import default_responder

    def responder(stage, messages, index):
        if stage == "consolidate":
            return consolidate_reply
        return default_responder(stage, messages, index)

    return responder

def test_run_totals_add_up_over_the_steps_of_a_run_and_its_resume(store, tmp_db):
    """The run row's totals are kept in memory between steps (read from the store by a resumed process): after a
    run stopped by its budget and resumed in a second call, they are the sums of every committed step's figures."""
    stats: list[dict] = []

    class Collect:  # a tracker: told each committed step's figures
        def start(self, *a) -> None:
            pass

        def step(self, stat, *a) -> None:
            stats.append(stat)

    res = train(cfg(budget=BudgetConfig(max_calls=14)), SCRIPTED, None, store=store, db=tmp_db, tracker=Collect())
    assert res.status == "stopped_budget" and [s["step"] for s in stats] == [0]
    first = store.get_run(res.run_id)["metrics"]
    res2 = train(cfg(budget=BudgetConfig(max_calls=1000)), SCRIPTED, None, store=store, db=tmp_db, resume=True,
                 tracker=Collect())
    assert res2.status == "completed" and [s["step"] for s in stats] == [0, 1]
    metrics = store.get_run(res.run_id)["metrics"]
    for k in ("rollouts_failed", "rollouts_truncated", "ops_applied", "proposals", "examples"):
        assert metrics["totals"][k] == sum(s[k] for s in stats), k
    assert metrics["totals"]["proposals"] > first["totals"]["proposals"] > 0
    assert metrics["last_step"]["step"] == 1 and metrics["wall_s"] > first["wall_s"] > 0


@pytest.mark.parametrize("reply", ["not json at all", ('{"ops": [{"op": "ADD", "text": "cut', "length"),
                                   '{"ops": [{"op": "DELETE", "id": 999}]}', '{"wrong": 1}'])
def test_malformed_learner_output_never_applied(store, tmp_db, monkeypatch, reply):
    from tfgrpo.llm import factory
    from tfgrpo.llm.scripted import ScriptedBackend

    monkeypatch.setattr(factory, "ScriptedBackend", lambda: ScriptedBackend(_responder_factory(reply)))
    res = train(cfg(fallback_add=False, limit=2), SCRIPTED, None, store=store, db=tmp_db)
    assert res.status == "completed"
    assert store.experiences("lib") == [] and store.current_version("lib") == 0
    rej = store.rejections(res.run_id)
    assert rej and all(r["stage"] == "consolidate" for r in rej)
    assert len(rej) == cfg().learner_retries + 1


def test_dry_run_estimates_without_calls():
    from tfgrpo.loop.run import estimate

    est = estimate(cfg(epochs=2), SCRIPTED)
    assert est["calls"]["rollout"] == 2 * 4 * 2 and est["steps"] == 4 and est["usd"] == 0.0


def test_cli_train_and_runs_json(tmp_path):
    from typer.testing import CliRunner

    from tfgrpo.cli import app

    db = tmp_path / "cli.duckdb"
    r = CliRunner().invoke(app, ["train", "--task", "arith", "--model", "scripted", "--epochs", "1",
                                 "--batch-size", "2", "--group-size", "2", "--limit", "4", "--db", str(db)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["runs", "--json", "--db", str(db)])
    assert r.exit_code == 0, r.output
    runs = json.loads(r.stdout)
    assert runs[0]["status"] == "completed" and runs[0]["rollouts"] == 8


def test_cli_bad_config_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from tfgrpo.cli import app

    r = CliRunner().invoke(app, ["train", "--task", "arith", "--model", "scripted", "--group-size", "1",
                                 "--db", str(tmp_path / "x.duckdb")])
    assert r.exit_code == 2 and "group size must be >= 2" in r.output and "Traceback" not in r.output


@pytest.mark.real
def test_real_embedded_model_one_step(smollm2_server, store, tmp_db):
    """Policy = real SmolLM2 over HTTP; learner scripted so ops are certain; provenance points at real rollouts.
    (Room enough for complete answers: truncated rollouts are kept out of the groups the learner compares.)"""
    c = cfg(limit=2, rollout=SamplingConfig(max_tokens=256))
    res = train(c, ModelConfig(model="local:smollm2"), SCRIPTED, store=store, db=tmp_db)
    assert res.status == "completed", res.error
    rows = store.rollouts(res.run_id)
    assert len(rows) == 4 and all(r.completion or r.error for r in rows)
    assert sum(r.completion_tokens for r in rows) > 0
    exps = store.experiences("lib")
    assert exps
    prov = [h.provenance for h in store.history("lib") if h.outcome == "applied"][0]
    assert set(prov.rollout_ids) <= {r.id for r in rows}


def test_agent_mode_training_stores_trajectories(store, tmp_db, monkeypatch):
    """`--agent react`: rollouts are tool-using trajectories (scripted model), stored with each rollout,
    and the learner's summaries read them."""
    from tfgrpo.config import TaskOptions
    from tfgrpo.llm import factory
    from tfgrpo.llm.scripted import ScriptedBackend, default_responder

    def responder(stage, messages, index):
        if stage == "rollout" and not any(m["role"] == "user" and "Observation" in str(m["content"])
                                          for m in messages[1:]):
            return "Thought: compute it.\nAction: python\nAction Input:\n```python\nprint(6 * 7)\n```"
        return default_responder(stage, messages, index)

    monkeypatch.setattr(factory, "ScriptedBackend", lambda: ScriptedBackend(responder))
    res = train(cfg(limit=2, task_options=TaskOptions(agent="react", max_turns=3)), SCRIPTED, None,
                store=store, db=tmp_db)
    assert res.status == "completed", res.error
    rows = store.rollouts(res.run_id)
    assert len(rows) == 4
    for r in rows:
        traj = r.extra["trajectory"]
        assert r.extra["tool_calls"] >= 1 and traj["steps"][0]["tool"] == "python"
        assert "42" in traj["steps"][0]["observation"]
    summaries = [c for c in store.calls(run_id=res.run_id) if c["stage"] == "summarize"]
    assert summaries and "python" in summaries[0]["request"][0]["content"]


def test_checkpoints_hold_ids_and_the_learner_still_reads_every_summary(store, tmp_db):
    """The checkpointed step state lists rollout ids (rows live in the store) and summarized ids (texts live in
    the memo), so a step of 10,000 rollouts is not serialized after every node; the learner still gets them."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    from experience_store.location import side_path

    res = train(cfg(learner_context_tokens=0), SCRIPTED, None, store=store, db=tmp_db)  # 0: every group summarized
    assert res.status == "completed", res.error
    seen_rollouts = seen_summaries = 0
    with SqliteSaver.from_conn_string(str(side_path(tmp_db, ".checkpoints.sqlite"))) as saver:
        for tup in saver.list({"configurable": {"thread_id": res.run_id}}):
            values = tup.checkpoint["channel_values"]
            for ids in (values.get("rollouts") or {}).values():
                assert ids and all(isinstance(i, str) for i in ids), ids
                seen_rollouts += 1
            summaries = values.get("summaries") or []
            assert isinstance(summaries, list) and all(isinstance(i, str) for i in summaries), summaries
            seen_summaries += bool(summaries)
    assert seen_rollouts and seen_summaries
    calls = store.calls(run_id=res.run_id)
    texts = [c["response"] for c in calls if c["stage"] == "summarize"]
    extract_prompts = " ".join(c["request"][-1]["content"] for c in calls if c["stage"] == "extract")
    assert texts and all(t.strip() in extract_prompts for t in texts)


def test_the_group_stage_revises_a_lesson_by_id_and_consolidation_applies_it(store, tmp_db, monkeypatch):
    """A group may propose a better text for a lesson the library has (by id); consolidation is told which
    lesson it revises and updates it, with the group's rollouts as provenance."""
    import re

    from tfgrpo.llm import factory
    from tfgrpo.llm.scripted import ScriptedBackend, default_responder

    better = "When a question has several steps, write and check each intermediate result before answering."
    consolidations: list[str] = []

    def responder(stage: str, messages: list[dict], index: int):
        last = str(messages[-1].get("content", ""))
        if stage == "extract" and "Lessons we already have (id: lesson):" in last:
            known = last.split("Lessons we already have (id: lesson):", 1)[1]
            lid = int(re.search(r"^(\d+): ", known, re.M).group(1))
            return json.dumps({"pattern": "multi-step", "experiences": [], "revisions": [{"id": lid, "text": better}]})
        if stage == "consolidate":
            consolidations.append(last)
            m = re.search(r"^(\d+): .*\(proposed as a better text for lesson (\d+)\)$", last, re.M)
            if m:
                return json.dumps({"ops": [{"op": "UPDATE", "id": int(m.group(2)), "text": better,
                                            "from": [int(m.group(1))], "reason": "a group showed it incomplete"}]})
        return default_responder(stage, messages, index)

    monkeypatch.setattr(factory, "ScriptedBackend", lambda: ScriptedBackend(responder))
    res = train(cfg(), SCRIPTED, None, store=store, db=tmp_db)
    assert res.status == "completed", res.error
    assert any("(proposed as a better text for lesson" in c for c in consolidations), consolidations
    assert [e.text for e in store.experiences("lib")] == [better]
    [upd] = [h for h in store.history("lib") if h.kind.value == "UPDATE" and h.outcome == "applied"]
    assert upd.provenance.step == 1 and upd.provenance.rollout_ids


def test_the_step_after_and_the_last_step_of_a_run():
    from tfgrpo.loop.context import StepContext

    cfg = TrainConfig(task="arith", batch_size=2, epochs=2)
    ctx = StepContext(cfg, None, {f"q{i}": None for i in range(3)}, None, None, None, None, "run")
    positions = [(0, 0)]
    while positions[-1][1] < cfg.epochs:
        cursor, epoch = positions[-1]
        positions.append(ctx.next_position({"cursor": cursor, "epoch": epoch}))
    assert positions == [(0, 0), (2, 0), (0, 1), (2, 1), (0, 2)]  # 3 questions, 2 a step: 2 steps an epoch
    last = [ctx.last_step({"cursor": c, "epoch": e}) for c, e in positions[:-1]]
    assert last == [False, False, False, True]
