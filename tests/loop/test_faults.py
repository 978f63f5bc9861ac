"""LLM transport faults during a real training run over HTTP (`conftest.py`): timeouts, 429, 500, resets, a
fatal error, a failed authentication, a model that cannot be reached. For every scenario: the run completes
(or stops with a clear status); the library is consistent; nothing is half-applied (a step's ops land in one
version or not at all); the fault is visible in the call log (an error, a retry count)."""

from __future__ import annotations

from experience_store import ExperienceStore, HashEmbedder
from tests.conftest import PAPER_LOOP
from tests.loop.conftest import LIB, RETRIES, by_stage, run, step_metrics
from tests.storecheck import assert_library_consistent
from tfgrpo.config import ModelConfig, SamplingConfig, TrainConfig
from tfgrpo.loop.run import train


def test_fault_baseline_applies_ops(server, outcome):
    store, res, calls = outcome()
    assert {c["stage"] for c in calls} == {"rollout", "summarize", "extract", "consolidate"}
    assert not any(c["error"] for c in calls) and store.rejections(res.run_id) == []
    assert store.current_version(LIB) == 1 and store.experiences(LIB)
    assert step_metrics(store, res.run_id)["consolidation"] == "ok"


def test_fault_timeout_is_retried(server, outcome):
    server.script_stage("rollout", ("sleep", 3.0))
    store, res, calls = outcome(timeout_s=1.0)
    [slow] = [c for c in by_stage(calls, "rollout") if c["attempts"] == 2]
    assert slow["error"] is None and slow["latency_s"] >= 1.0
    assert all(not r.error for r in store.rollouts(res.run_id))


def test_fault_timeout_persistent_learner_falls_back(server, outcome):
    server.script_stage("consolidate", ("sleep", 3.0), ("sleep", 3.0))
    store, res, calls = outcome(timeout_s=1.0, max_attempts=2)
    [cons] = by_stage(calls, "consolidate")
    assert "no answer within" in cons["error"] and cons["attempts"] == 2
    [rej] = store.rejections(res.run_id)
    assert rej["stage"] == "consolidate" and "learner call failed" in rej["reason"]
    assert step_metrics(store, res.run_id)["consolidation"] == "fallback"  # proposals added as they are
    assert all("consolidation rejected" in h.reason for h in store.history(LIB))


def test_fault_429_honours_retry_after(server, outcome):
    server.script_stage("summarize", ("status", 429, {"retry-after": "0.6"}))
    store, res, calls = outcome()
    [retried] = [c for c in by_stage(calls, "summarize") if c["attempts"] == 2]
    assert retried["error"] is None and retried["latency_s"] >= 0.55
    assert store.current_version(LIB) == 1


def test_fault_500_persistent_extract(server, outcome):
    server.script_stage("extract", *[("status", 500)] * 4)  # 2 groups x 2 attempts
    store, res, calls = outcome("nothing_learned", max_attempts=2)
    assert "the learner wrote nothing usable" in res.error
    ext = by_stage(calls, "extract")
    assert len(ext) == 2 and all("500" in c["error"] and "gave up after 2" in c["error"] for c in ext)
    rej = store.rejections(res.run_id)
    assert len(rej) == 2 and all(r["stage"] == "extract" and "learner call failed" in r["reason"] for r in rej)
    assert by_stage(calls, "consolidate") == [] and store.current_version(LIB) == 0  # nothing to apply


def test_fault_connection_reset(server, outcome):
    server.script_stage("rollout", ("reset",))  # one reset: retried on a new connection
    server.script_stage("consolidate", ("reset",), ("reset",))  # persistent: the learner call fails
    store, res, calls = outcome(max_attempts=2)
    assert [c["attempts"] for c in by_stage(calls, "rollout")].count(2) == 1
    assert all(not r.error for r in store.rollouts(res.run_id))
    [cons] = by_stage(calls, "consolidate")
    assert "cannot connect" in cons["error"]
    assert step_metrics(store, res.run_id)["consolidation"] == "fallback"


def test_fault_fatal_error_cancels_the_calls_in_flight(server, tmp_path):
    # one rollout is refused (401: fatal) while the other three are still waiting for their answers: those
    # are cancelled before the run closes its HTTP client, so none is logged as a server disconnect
    server.script_stage("rollout", ("sleep", 0.8), ("status", 401), ("sleep", 0.8), ("sleep", 0.8))
    store, res = run(server, tmp_path, max_attempts=1)
    try:
        calls = store.calls(run_id=res.run_id)
        assert res.status == "failed" and "authentication" in (res.error or ""), res
        assert [c["error"] for c in calls if c["error"]] and all("authentication" in c["error"] for c in calls
                                                                if c["error"]), calls
        assert not any("disconnect" in (c["error"] or "").lower() for c in calls)
        assert_library_consistent(store, LIB)
    finally:
        store.close()


def test_fault_auth_failure_everywhere_stops_the_run(server, tmp_path):
    server.script(*[("status", 401)] * 50)
    store, res = run(server, tmp_path, max_attempts=1)
    try:
        errors = [c["error"] for c in store.calls(run_id=res.run_id)]
        assert all(e and "authentication" in e for e in errors), (res, errors)  # everything shown on a failure
        assert_library_consistent(store, LIB)
        assert res.status == "failed" and "authentication" in (res.error or ""), (res, errors)
    finally:
        store.close()


def test_a_model_that_cannot_be_reached_stops_the_run_and_resume_finishes_it(server, tmp_path, monkeypatch):
    """The circuit breaker: calls in a row that cannot reach the model (connection reset, over real HTTP) stop the
    run as `stopped_unreachable` with the cause and --resume; once the model answers again, --resume completes."""
    monkeypatch.setenv("TFGRPO_BREAKER_CALLS", "3")
    server.script(*[("reset",)] * 40)
    db = tmp_path / "faults.duckdb"
    store = ExperienceStore(db, embedder=HashEmbedder())
    cfg = TrainConfig(task="arith", library=LIB, epochs=1, batch_size=2, group_size=2, limit=2, **PAPER_LOOP,
                      rollout=SamplingConfig(max_tokens=64), learner_retries=RETRIES)
    model = ModelConfig(model="openai/fake", api_base=server.api_base, timeout_s=1.0, max_attempts=2)
    try:
        res = train(cfg, model, None, store=store, db=db)
        assert res.status == "stopped_unreachable", (res.status, res.error)
        assert "could not reach the model" in res.error and "--resume" in res.error
        run = store.get_run(res.run_id)
        assert run["status"] == "stopped_unreachable" and not run.get("finished_at")
        errors = [c["error"] for c in store.calls(run_id=res.run_id)]
        assert len(errors) >= 3 and all("cannot connect" in e for e in errors)  # the cause is in the log
        assert store.current_version(LIB) == 0
        server.actions.clear()  # the model is back
        again = train(cfg, model, None, store=store, db=db, resume=True)
        assert again.status == "completed" and again.run_id == res.run_id, (again.status, again.error)
        assert len(store.rollouts(res.run_id)) == 4 and all(not r.error for r in store.rollouts(res.run_id))
        assert_library_consistent(store, LIB)
    finally:
        store.close()
