"""Runs, rollouts, the LLM call log, evaluations and learner rejections on real stores (DuckDB, Postgres)."""

from __future__ import annotations

import pytest

from experience_store import ExperienceStore, RolloutRow
from tfgrpo.errors import StoreError
from tfgrpo_common.chat import CallLog, CallRecord


@pytest.fixture()
def store(make_db):
    with ExperienceStore(make_db("runs")) as s:
        yield s


def rollout(run: str, step: int, qid: str, i: int, reward: float) -> RolloutRow:
    return RolloutRow(
        id=f"{run}:{step}:{qid}:{i}", run_id=run, step=step, question_id=qid, question=f"What is {qid}?",
        completion=f"answer {i}", reward=reward, prompt_tokens=10, completion_tokens=5, version=step,
        extra={"injected": [1, 2], "trajectory": [{"role": "assistant", "content": "x"}]},
    )


def test_run_lifecycle_and_counts(store):
    run = store.create_run("lib", "train", {"group_size": 5, "epochs": 2}, "local")
    assert run.startswith("train-")
    assert store.latest_unfinished_run("lib")["id"] == run
    store.add_rollouts([rollout(run, 1, "q1", i, float(i % 2)) for i in range(4)])
    store.add_rollouts([rollout(run, 1, "q1", 0, 0.5)])  # same id again: ignored (resume)
    for stage, cost in (("rollout", 0.01), ("extract", 0.02)):
        store.record(CallRecord(model="m", stage=stage, prompt_tokens=100, completion_tokens=20, cost_usd=cost, run_id=run))
    store.update_run(run, steps=1, metrics={"reward_mean": 0.5})
    got = store.get_run(run)
    assert (got["steps"], got["rollouts"], got["llm_calls"], got["tokens"]) == (1, 4, 2, 240)
    assert got["cost_usd"] == pytest.approx(0.03)
    assert got["metrics"] == {"reward_mean": 0.5} and got["config"]["group_size"] == 5
    assert store.run_metrics(run) == {"reward_mean": 0.5}
    store.update_run(run, status="finished")
    assert store.get_run(run)["finished_at"] is not None
    assert store.latest_unfinished_run("lib") is None
    assert [r["id"] for r in store.list_runs("lib")] == [run] and store.list_runs("other") == []


def test_rollouts_round_trip(store):
    run = store.create_run("lib", "train", {}, "m")
    rows = [rollout(run, s, "q1", i, 1.0) for s in (1, 2) for i in range(2)]
    store.add_rollouts(rows)
    back = store.rollouts(run)
    assert back == rows
    assert [r.id for r in store.rollouts(run, step=2)] == [f"{run}:2:q1:0", f"{run}:2:q1:1"]
    assert store.rollouts(run)[0].extra["injected"] == [1, 2]


def test_a_failed_rollout_is_replaced_by_its_resample_and_an_answered_one_is_never(store):
    run = store.create_run("lib", "train", {}, "m")
    failed = rollout(run, 1, "q1", 0, 0.0).model_copy(update={"completion": "", "error": "cannot connect"})
    store.add_rollouts([failed, rollout(run, 1, "q1", 1, 1.0)])
    store.add_rollouts([rollout(run, 1, "q1", 0, 1.0), rollout(run, 1, "q1", 1, 0.0)])  # the resumed step
    got = {r.id: r for r in store.rollouts(run)}
    assert len(got) == 2 and not any(r.error for r in got.values())
    assert got[failed.id].reward == 1.0 and got[failed.id].completion == "answer 0"
    assert got[f"{run}:1:q1:1"].reward == 1.0  # answered before: kept as it was
    assert store.get_run(run)["rollouts"] == 2


def test_run_errors(store):
    with pytest.raises(StoreError, match="no run 'nope'"):
        store.get_run("nope")
    with pytest.raises(StoreError, match="no run 'nope'"):
        store.run_metrics("nope")
    run = store.create_run(None, "eval", {}, "m")
    assert store.run_metrics(run) == {}  # no metrics written yet
    with pytest.raises(StoreError, match="unknown fields"):
        store.update_run(run, colour="blue")
    with pytest.raises(StoreError, match="no run 'nope'"):
        store.update_run("nope", status="finished")


def test_call_log_protocol_filters_and_limit(store):
    assert isinstance(store, CallLog)
    recs = [CallRecord(stage="rollout" if i % 2 else "extract", ts=1000.0 + i, request=[{"role": "user", "content": f"q{i}"}],
                       response=f"r{i}", meta={"i": i}) for i in range(5)]
    for rec in recs:
        store.record(rec)
    store.record(recs[0])  # duplicate id ignored
    calls = store.calls()
    assert [c["response"] for c in calls] == ["r0", "r1", "r2", "r3", "r4"]
    assert calls[2]["request"] == [{"role": "user", "content": "q2"}] and calls[2]["meta"] == {"i": 2}
    assert [c["response"] for c in store.calls(stage="rollout")] == ["r1", "r3"]
    assert [c["response"] for c in store.calls(limit=2)] == ["r3", "r4"]


def test_a_batch_retried_with_some_rows_stored_adds_only_the_new_ones(store):
    """A batch whose commit was not acknowledged is sent again, with records that came since: the stored ones
    are left as they are (the first, plain INSERT fails on their ids and the batch is redone skipping them), the
    new ones are stored, and nothing is counted twice."""
    recs = [CallRecord(stage="rollout", ts=1000.0 + i, response=f"r{i}") for i in range(4)]
    assert store.record_many(recs[:2])
    again = [recs[0].model_copy(update={"response": "changed"}), recs[1], recs[2], recs[3]]
    assert store.record_many(again)
    assert [c["response"] for c in store.calls()] == ["r0", "r1", "r2", "r3"]
    assert store.record_many(recs)  # all stored already
    assert len(store.calls()) == 4


def test_record_never_raises(make_db, caplog):
    path = make_db("ro")
    ExperienceStore(path).close()
    with ExperienceStore(path, read_only=True) as ro:
        ro.record(CallRecord(stage="x"))  # read-only: logged, not raised
        assert ro.calls() == []
    assert "could not record LLM call(s)" in caplog.text


def test_evals_and_learner_rejections(store):
    store.record_eval(None, "lib", 3, "gsm8k", "local", {"mean@1": 0.4, "n": 30})
    store.record_eval("run-x", "other", 1, "gsm8k", "local", {"mean@1": 0.5})
    assert [e["metrics"]["mean@1"] for e in store.evals("lib")] == [0.4]
    assert len(store.evals()) == 2
    store.record_rejection("run-x", 2, "consolidate", "truncated JSON", '{"ops": [')
    store.record_rejection("run-y", 1, "extract", "unknown id 9", "{}")
    rej = store.rejections("run-x")
    assert [(r["stage"], r["reason"], r["raw"]) for r in rej] == [("consolidate", "truncated JSON", '{"ops": [')]
    assert len(store.rejections()) == 2
