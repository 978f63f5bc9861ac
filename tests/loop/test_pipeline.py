"""A step learns from each group as soon as the group is scored (`tfgrpo/loop/pipeline.py`): over real HTTP
(the fault server, one group's rollouts made slow), the learner reads the fast group while the slow one is
still being sampled, and the step still learns from both."""

from __future__ import annotations

import pytest

from experience_store import ExperienceStore, HashEmbedder
from tasks.builtin import ArithTask
from tests.conftest import PAPER_LOOP
from tests.faultserver import FaultServer
from tfgrpo.config import ModelConfig, SamplingConfig, TrainConfig
from tfgrpo.loop.run import train

ITEMS = ArithTask().examples("train")[:2]
SLOW_S = 3.0


@pytest.fixture()
def store(tmp_db):
    s = ExperienceStore(tmp_db, embedder=HashEmbedder())
    yield s
    s.close()


def test_the_learner_reads_a_finished_group_while_a_slower_group_is_still_sampled(store, tmp_db):
    with FaultServer(plausible=True, answers={ex.question: ex.answer for ex in ITEMS}) as srv:
        srv.slow_rollouts[ITEMS[1].question] = SLOW_S
        cfg = TrainConfig(task="arith", library="lib", epochs=1, batch_size=2, group_size=2, limit=2, **PAPER_LOOP,
                          rollout=SamplingConfig(max_tokens=64))
        res = train(cfg, ModelConfig(model="openai/fake", api_base=srv.api_base, timeout_s=30), None,
                    store=store, db=tmp_db)
        timeline = list(srv.timeline)
    assert res.status == "completed", res.error
    rollouts = [(a, b) for stage, a, b in timeline if stage == "rollout"]
    learner = [(stage, a) for stage, a, _ in timeline if stage in ("summarize", "extract")]
    assert len(rollouts) == 4
    slow_done = max(b for _, b in rollouts)
    assert slow_done - min(a for a, _ in rollouts) >= SLOW_S
    # the fast group's summaries and extraction were asked for before the slow group's rollouts were answered
    early = [stage for stage, a in learner if a < slow_done]
    assert "extract" in early and early.count("summarize") == 2, timeline
    # both groups were learned from (each alternates a right and a wrong answer: mixed), in one step
    calls = store.calls(run_id=res.run_id)
    assert sum(1 for c in calls if c["stage"] == "extract") == 2
    assert sorted({c["meta"].get("group", "") for c in calls if c["stage"] == "extract"}) == \
        sorted(f"{res.run_id}:0:ext:{ex.id}" for ex in ITEMS)
    assert store.experiences("lib"), "the step's op batch was applied"


class _Stop(Exception):
    pass


def _library(store) -> list[tuple[str, str]]:
    return sorted((e.kind, e.text) for e in store.experiences("lib"))


def test_a_run_checkpointed_before_the_pipeline_resumes_through_the_stage_by_stage_nodes(tmp_path):
    """A run whose checkpoint says "summarize next" (the step graph before the pipeline) resumes through the
    select/summarize/extract nodes, reuses every memoized learner answer, and ends with the library an
    uninterrupted run learns."""
    import asyncio

    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from tfgrpo.loop.graph import build_graph
    from tfgrpo.loop.run import side_paths

    cfg = TrainConfig(task="arith", library="lib", epochs=1, batch_size=2, group_size=2, limit=2, **PAPER_LOOP,
                      rollout=SamplingConfig(max_tokens=64))
    model = ModelConfig(model="scripted")
    with ExperienceStore(tmp_path / "ref.duckdb", embedder=HashEmbedder()) as ref:
        assert train(cfg, model, None, store=ref, db=tmp_path / "ref.duckdb").status == "completed"
        expected = _library(ref)

    db = tmp_path / "old.duckdb"

    def stop_before_consolidate(stage, step, msg):
        if stage == "consolidate":
            raise _Stop("killed after the rollouts node was checkpointed")

    with ExperienceStore(db, embedder=HashEmbedder()) as store:
        res = train(cfg, model, None, store=store, db=db, on_stage=stop_before_consolidate)
        assert res.status == "failed" and "killed after" in res.error
        run_id = res.run_id

    async def rewind() -> tuple:  # the state the stage-by-stage graph had after its select node
        ckpt, _ = side_paths(db)
        async with AsyncSqliteSaver.from_conn_string(str(ckpt)) as saver:
            graph = build_graph(None).compile(checkpointer=saver)
            config = {"configurable": {"thread_id": run_id}}
            await graph.aupdate_state(config, {"summaries": [], "proposals": [], "examples": []}, as_node="select")
            return (await graph.aget_state(config)).next

    assert asyncio.run(rewind()) == ("summarize",)
    stages: list[str] = []
    with ExperienceStore(db, embedder=HashEmbedder()) as store:
        calls_before = len(store.calls(run_id=run_id))
        res = train(cfg, model, None, store=store, db=db, resume=True, on_stage=lambda st, *_: stages.append(st))
        assert res.status == "completed", res.error
        assert stages[:2] == ["summarize", "extract"] and "consolidate" in stages
        every_call = store.calls(run_id=run_id)
        new_calls = every_call[calls_before:]
        assert {c["stage"] for c in new_calls} <= {"consolidate"}, "summaries and extractions come from the memo"
        # the consolidation the first process began ahead (and finished) is not asked again
        assert sum(1 for c in every_call if c["stage"] == "consolidate") == 1
        assert _library(store) == expected


def test_a_group_is_learned_from_while_its_rollouts_are_written_and_memoized_only_after(tmp_path, monkeypatch):
    """The learner reads a scored group while the group's rollouts are still being written (the write is off
    the step's critical path), and its answers reach the resume memo only once those rollouts are stored: a
    step killed in between samples the group again and asks the learner again, about the rollouts it stores."""
    import time

    from tfgrpo.loop.memo import Memo

    events: list[tuple[str, float, set[str]]] = []
    cfg = TrainConfig(task="arith", library="lib", epochs=1, batch_size=2, group_size=2, limit=2, **PAPER_LOOP,
                      rollout=SamplingConfig(max_tokens=64))
    db = tmp_path / "s.duckdb"
    with ExperienceStore(db, embedder=HashEmbedder()) as store:
        add = store.add_rollouts

        def slow_add(rows):  # a busy store
            time.sleep(0.5)
            add(rows)
            events.append(("stored", time.time(), {r.question_id for r in rows}))

        put_many = Memo.put_many

        def noted(self, items):
            events.append(("memo", time.time(), {k.rsplit(":", 1)[1] for k in items if ":ext:" in k}))
            put_many(self, items)

        monkeypatch.setattr(store, "add_rollouts", slow_add)
        monkeypatch.setattr(Memo, "put_many", noted)
        res = train(cfg, ModelConfig(model="scripted"), None, store=store, db=db)
        assert res.status == "completed", res.error
        extract_started = {c["meta"]["group"].rsplit(":", 1)[1]: c["ts"] for c in store.calls(run_id=res.run_id)
                           if c["stage"] == "extract"}
        assert len(store.rollouts(res.run_id)) == 4
    stored = {q: t for kind, t, qids in events if kind == "stored" for q in qids}
    memoized = {q: t for kind, t, qids in events if kind == "memo" for q in qids}
    assert sorted(extract_started) == sorted(stored) == sorted(memoized) == sorted(ex.id for ex in ITEMS)
    for qid in stored:
        assert extract_started[qid] < stored[qid] <= memoized[qid], events


def test_a_step_reads_its_library_once_for_the_prior_the_stage_message_and_the_learner(store, tmp_db):
    """Over real HTTP, two steps of one question: the second step's rollouts start from one read of the library
    (the prior, the stage message and the lessons the learner may revise all use it), and both the rollouts'
    prompts and the learner's prompt carry the lessons the first step wrote."""
    reads: list[str] = []
    stage = {"now": ""}
    experiences = store.experiences

    def counted(*a, **k):
        reads.append(stage["now"])
        return experiences(*a, **k)

    store.experiences = counted

    def on_stage(name, step, msg):
        stage["now"] = f"{step}:{name}"

    with FaultServer(plausible=True, answers={ex.question: ex.answer for ex in ITEMS}) as srv:
        cfg = TrainConfig(task="arith", library="lib", epochs=1, batch_size=1, group_size=2, limit=2, **PAPER_LOOP,
                          rollout=SamplingConfig(max_tokens=64))
        res = train(cfg, ModelConfig(model="openai/fake", api_base=srv.api_base, timeout_s=30), None,
                    store=store, db=tmp_db, on_stage=on_stage)
        bodies = list(zip(srv.stages, srv.requests))
    assert res.status == "completed", res.error
    lessons = [e for e in experiences("lib", 1) if e.kind == "lesson"]
    assert lessons, "the first step wrote lessons"
    # between the second step's sample message and its first group: the one read (the rollouts message follows it)
    assert reads.count("1:sample") == 1 and reads.count("1:rollouts") == 0, reads
    second = [b for s, b in bodies if s in ("rollout", "extract")][-3:]  # the second step's two rollouts and extract
    for body in second:
        prompt = " ".join(str(m.get("content", "")) for m in body["messages"])
        assert all(e.text in prompt for e in lessons), prompt


def test_what_the_commit_reads_first_is_read_while_the_learner_consolidates(store, tmp_db, monkeypatch):
    """Over real HTTP, consolidation answered after 1 s: the version the step's ops were applied as (none yet)
    and the run's metrics are read once, before the learner's answer arrives, and the commit reads neither
    again; the step is committed as usual."""
    import time

    reads: list[tuple[str, float]] = []
    for name in ("step_version", "run_metrics"):
        method = getattr(ExperienceStore, name)

        def timed(self, *a, _method=method, _name=name, **k):
            reads.append((_name, time.monotonic()))
            return _method(self, *a, **k)

        monkeypatch.setattr(ExperienceStore, name, timed)
    with FaultServer(plausible=True, answers={ex.question: ex.answer for ex in ITEMS}) as srv:
        srv.script_stage("consolidate", ("sleep", 1.0))
        cfg = TrainConfig(task="arith", library="lib", epochs=1, batch_size=2, group_size=2, limit=2, **PAPER_LOOP,
                          rollout=SamplingConfig(max_tokens=64))
        res = train(cfg, ModelConfig(model="openai/fake", api_base=srv.api_base, timeout_s=30), None,
                    store=store, db=tmp_db)
        [(_, asked, answered)] = [t for t in srv.timeline if t[0] == "consolidate"]
    assert res.status == "completed", res.error
    assert [name for name, _ in reads] == ["step_version", "run_metrics"], reads
    assert all(t < answered for _, t in reads)  # read while the learner was still consolidating
    run = store.get_run(res.run_id)
    assert run["steps"] == 1 and run["metrics"]["last_step"]["version"] == store.current_version("lib") >= 1


def test_the_consolidation_request_leaves_before_the_rollouts_node_is_checkpointed(store, tmp_db):
    """Over real HTTP: the learner is asked to consolidate as soon as the step's last group is learned from, before
    the consolidate node starts (after the rollouts node's call records and checkpoint are written), and only
    once; the answer is the one the step applies. The call's start is the client's (its call record's `ts`): the
    server's arrival stamp comes from a thread that may get the interpreter only after the node has started."""
    import time

    marks: dict[str, float] = {}
    with FaultServer(plausible=True, answers={ex.question: ex.answer for ex in ITEMS}) as srv:
        srv.script_stage("consolidate", ("sleep", 1.0))
        cfg = TrainConfig(task="arith", library="lib", epochs=1, batch_size=2, group_size=2, limit=2, **PAPER_LOOP,
                          rollout=SamplingConfig(max_tokens=64))
        res = train(cfg, ModelConfig(model="openai/fake", api_base=srv.api_base, timeout_s=30), None,
                    store=store, db=tmp_db,
                    on_stage=lambda stage, *_: marks.setdefault(stage, (time.monotonic(), time.time())))
        timeline = list(srv.timeline)
    assert res.status == "completed", res.error
    [(_, asked, answered)] = [t for t in timeline if t[0] == "consolidate"]
    last_extract = max(b for stage, _, b in timeline if stage == "extract")
    [call] = [c for c in store.calls(run_id=res.run_id) if c["stage"] == "consolidate"]  # once
    assert last_extract <= asked < answered and marks["consolidate"][0] < answered
    assert call["ts"] < marks["consolidate"][1]  # the call began before the consolidate node started
    assert store.current_version("lib") >= 1


def test_a_new_run_reads_no_stored_rollouts_and_no_checkpoint(store, tmp_db, monkeypatch):
    """A run this process creates has nothing stored or checkpointed yet: over real HTTP, its two steps read no
    rollouts back from the store and never ask the checkpointer for a saved state (a resumed run does both)."""
    from langgraph.pregel import Pregel

    reads: list[str] = []
    rollouts, get_state = ExperienceStore.rollouts, Pregel.aget_state
    monkeypatch.setattr(ExperienceStore, "rollouts", lambda self, *a, **k: reads.append("rollouts") or
                        rollouts(self, *a, **k))

    async def counted_get_state(self, *a, **k):
        reads.append("state")
        return await get_state(self, *a, **k)

    monkeypatch.setattr(Pregel, "aget_state", counted_get_state)
    with FaultServer(plausible=True, answers={ex.question: ex.answer for ex in ITEMS}) as srv:
        cfg = TrainConfig(task="arith", library="lib", epochs=2, batch_size=2, group_size=2, limit=2, **PAPER_LOOP,
                          rollout=SamplingConfig(max_tokens=64))
        res = train(cfg, ModelConfig(model="openai/fake", api_base=srv.api_base, timeout_s=30), None,
                    store=store, db=tmp_db)
    assert res.status == "completed", res.error
    assert store.get_run(res.run_id)["steps"] == 2 and reads == []
    assert len(store.rollouts(res.run_id)) == 8 and reads == ["rollouts"]  # the counter counts (this test's read)
