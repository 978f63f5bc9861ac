"""What the model says, faulty, during a real training run over HTTP (`conftest.py`): empty, truncated, non-JSON,
prose, wrong-shaped or invalid learner outputs, one-megabyte answers, invalid UTF-8, refusals. For every
scenario: the run completes (or stops with a clear status); the library is consistent; nothing is half-applied;
the fault is visible in the call log (the raw output or its finish_reason) and in the learner's rejections."""

from __future__ import annotations

import json
import time

import pytest

from tests.loop.conftest import LIB, RETRIES, by_stage, step_metrics


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
