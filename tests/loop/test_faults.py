"""LLM faults during a real training run over HTTP: a fault-injecting OpenAI-compatible server
(`tests/faultserver.py`) answers one step (B=2 questions x G=2 rollouts; the learner is the same
model) with plausible content except where a scenario injects a fault into one stage.

For every scenario: the run completes (or stops with a clear status); the library is consistent;
nothing is half-applied (a step's ops land in one version or not at all); the fault is visible in the
call log (an error, a retry count, the raw output or its finish_reason) and, for learner outputs,
in the rejections."""

from __future__ import annotations

import json
import time

import pytest

from experience_store import ExperienceStore, HashEmbedder
from tasks.builtin import ArithTask
from tests.faultserver import FaultServer
from tests.storecheck import assert_library_consistent, assert_step_atomic
from tests.conftest import PAPER_LOOP
from tfgrpo.config import ModelConfig, SamplingConfig, TrainConfig
from tfgrpo.loop.run import train

ITEMS = ArithTask().examples("train")[:2]
ANSWERS = {ex.question: ex.answer for ex in ITEMS}
LIB = "lib"
RETRIES = 2  # learner_retries: a bad learner output is asked for 3 times


@pytest.fixture()
def server():
    with FaultServer(plausible=True, answers=ANSWERS) as srv:
        yield srv


def run(srv: FaultServer, tmp_path, *, fallback_add: bool = True, timeout_s: float = 1.0, max_attempts: int = 2):
    db = tmp_path / "faults.duckdb"
    store = ExperienceStore(db, embedder=HashEmbedder())
    cfg = TrainConfig(task="arith", library=LIB, epochs=1, batch_size=2, group_size=2, limit=2, **PAPER_LOOP,
                      rollout=SamplingConfig(max_tokens=64), learner_retries=RETRIES, fallback_add=fallback_add)
    model = ModelConfig(model="openai/fake", api_base=srv.api_base, timeout_s=timeout_s, max_attempts=max_attempts)
    res = train(cfg, model, None, store=store, db=db)
    return store, res


@pytest.fixture()
def outcome(server, tmp_path):
    """Run the scenario scripted by the test's `faults` marker; yield (store, result, calls)."""
    stores = []

    def go(expect: str | tuple[str, ...] = "completed", **kw):
        """`expect`: the run's status; "nothing_learned" when every learner answer is refused."""
        store, res = run(server, tmp_path, **kw)
        stores.append(store)
        expected = (expect,) if isinstance(expect, str) else expect
        assert res.status in expected, (res.status, res.error)
        assert store.get_run(res.run_id)["status"] == res.status
        assert len(store.rollouts(res.run_id)) == 4
        assert_library_consistent(store, LIB)
        assert_step_atomic(store, LIB, res.run_id)
        return store, res, store.calls(run_id=res.run_id)

    yield go
    for s in stores:
        s.close()


def by_stage(calls, stage):
    return [c for c in calls if c["stage"] == stage]


def step_metrics(store, run_id):
    return store.get_run(run_id)["metrics"]["last_step"]


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


def test_fault_empty_content(server, outcome):
    server.script_stage("extract", *[("ok", "")] * (2 * (RETRIES + 1)))
    store, res, calls = outcome("nothing_learned")
    ext = by_stage(calls, "extract")
    assert len(ext) == 6 and all(c["response"] == "" and c["error"] is None for c in ext)
    rej = store.rejections(res.run_id)
    assert len(rej) == 6 and all("no JSON object" in r["reason"] for r in rej)
    assert store.current_version(LIB) == 0


def test_fault_truncated_output_never_applied(server, outcome):
    cut = '{"ops": [{"op": "ADD", "text": "Write each step'
    server.script_stage("consolidate", *[("ok", cut, "length")] * (RETRIES + 1))
    store, res, calls = outcome(fallback_add=False)
    cons = by_stage(calls, "consolidate")
    assert len(cons) == 3 and all(c["finish_reason"] == "length" for c in cons)
    rej = store.rejections(res.run_id)
    assert len(rej) == 3 and all("truncated" in r["reason"] and r["raw"] == cut for r in rej)
    assert store.current_version(LIB) == 0 and store.experiences(LIB) == []


def test_fault_non_json_where_json_asked(server, outcome):
    prose = "I would add a lesson about writing intermediate results, and keep the rest."
    server.script_stage("consolidate", *[("ok", prose)] * (RETRIES + 1))
    store, res, calls = outcome(fallback_add=False)
    assert [c["response"] for c in by_stage(calls, "consolidate")] == [prose] * 3
    rej = store.rejections(res.run_id)
    assert len(rej) == 3 and all("no JSON object" in r["reason"] for r in rej)
    assert store.current_version(LIB) == 0


def test_fault_extraction_in_prose_is_read_not_lost(server, outcome):
    """A small learner often reasons and lists its lessons without the JSON: the "When ..., ..." sentences
    after its lessons heading become the proposals; those in its assessment do not."""
    lesson = "When a sum has many terms, write each partial result on its own line."
    prose = ("Assessment: When attempt 2 added, it skipped a term.\nComparison: the winner wrote partials.\n"
             f"Pattern: multi-step sums\n\nNew general lessons:\n1. {lesson}\n")
    server.script_stage("extract", *[("ok", prose)] * 2)
    store, res, calls = outcome()
    assert [r for r in store.rejections(res.run_id) if r["stage"] == "extract"] == []
    consolidate = [b for b, s in zip(server.requests, server.stages) if s == "consolidate"]
    shown = consolidate[0]["messages"][-1]["content"]
    assert lesson in shown and "attempt 2 added" not in shown
    assert store.current_version(LIB) == 1


@pytest.mark.parametrize("stage,reply", [
    ("extract", '{"experiences": "one lesson, not a list"}'),
    ("consolidate", '{"ops": [{"op": "RENAME", "text": "x"}]}'),
    ("consolidate", '{"ops": {"op": "ADD", "text": "not a list"}}'),
])
def test_fault_json_of_wrong_shape(server, outcome, stage, reply):
    n = (2 if stage == "extract" else 1) * (RETRIES + 1)
    server.script_stage(stage, *[("ok", reply)] * n)
    store, res, calls = outcome("nothing_learned" if stage == "extract" else "completed", fallback_add=False)
    rej = store.rejections(res.run_id)
    assert len(rej) == n and all(r["stage"] == stage and "wrong shape" in r["reason"] for r in rej)
    assert all(c["response"] == reply for c in by_stage(calls, stage))
    assert store.current_version(LIB) == 0


def test_fault_op_naming_unknown_id_is_refused_alone(server, outcome):
    """Ops are validated one by one: the valid ADD is applied, the DELETE of an unknown id is refused and
    recorded with its reason (once: the output as a whole was usable, so it is not retried)."""
    reply = json.dumps({"ops": [{"op": "ADD", "text": "Write each intermediate result.", "from": [1]},
                                {"op": "DELETE", "id": 999, "reason": "obsolete"}]})
    server.script_stage("consolidate", *[("ok", reply)] * (RETRIES + 1))
    store, res, calls = outcome(fallback_add=False)
    [rej] = store.rejections(res.run_id)
    assert rej["stage"] == "consolidate" and "op refused" in rej["reason"] and "unknown or deleted id 999" in rej["reason"]
    assert [e.text for e in store.experiences(LIB)] == ["Write each intermediate result."]
    assert len(by_stage(calls, "consolidate")) == 1


def test_fault_only_invalid_ops_reject_the_whole_output(server, outcome):
    reply = json.dumps({"ops": [{"op": "DELETE", "id": 999, "reason": "obsolete"}]})
    server.script_stage("consolidate", *[("ok", reply)] * (RETRIES + 1))
    store, res, calls = outcome(fallback_add=False)
    rej = store.rejections(res.run_id)
    assert len(rej) == 3 and all("no valid op" in r["reason"] and "999" in r["reason"] for r in rej)
    assert store.current_version(LIB) == 0 and store.history(LIB) == []


def test_fault_one_megabyte_answers(server, outcome):
    big = ("word " * 200_000) + "so the answer is \\boxed{1}."
    server.script_stage("rollout", ("ok", big))
    server.script_stage("consolidate", *[("ok", "{" * 1_000_000)] * (RETRIES + 1))  # degenerate learner output
    start = time.monotonic()
    store, res, calls = outcome()
    assert time.monotonic() - start < 60
    assert max(len(r.completion) for r in store.rollouts(res.run_id)) > 1_000_000
    assert max(len(c["response"] or "") for c in by_stage(calls, "rollout")) > 1_000_000
    summaries = [b for b, s in zip(server.requests, server.stages) if s == "summarize"]
    assert max(len(b["messages"][-1]["content"]) for b in summaries) < 10_000  # the learner sees a cut
    rej = store.rejections(res.run_id)
    assert len(rej) == 3 and all("no JSON object" in r["reason"] for r in rej)
    assert step_metrics(store, res.run_id)["consolidation"] == "fallback"


def test_fault_invalid_utf8(server, outcome):
    bad = (b'{"id":"x","object":"chat.completion","created":1,"model":"fake","choices":[{"index":0,'
           b'"message":{"role":"assistant","content":"caf\xc3\x28 \xff\xfe"},"finish_reason":"stop"}],'
           b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}')
    server.script_stage("rollout", ("raw", bad, "application/json"))
    store, res, calls = outcome()
    [failed] = [c for c in by_stage(calls, "rollout") if c["error"]]
    assert "decode" in failed["error"]
    [row] = [r for r in store.rollouts(res.run_id) if r.error]
    assert row.reward == 0.0 and "decode" in row.error and row.completion == ""


def test_fault_refusal(server, outcome):
    server.script_stage("rollout", ("refusal", "I can't help with that request."))
    sorry = "I'm sorry, but I can't help with that."
    server.script_stage("extract", *[("ok", sorry)] * (2 * (RETRIES + 1)))
    store, res, calls = outcome(("completed", "nothing_learned"))
    [refused] = [c for c in by_stage(calls, "rollout") if c["meta"].get("refusal")]
    assert refused["meta"]["refusal"] == "I can't help with that request." and refused["response"] == ""
    assert min(r.reward for r in store.rollouts(res.run_id)) == 0.0
    rej = store.rejections(res.run_id)
    # which groups are selected, and how the scripted refusals interleave between them, depends on call
    # order: every text refusal the learner got is rejected with its raw text, and nothing else is
    refusals = [c for c in by_stage(calls, "extract") if c["response"] == sorry]
    assert refusals and len(rej) == len(refusals) and all(r["raw"] == sorry for r in rej)


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
