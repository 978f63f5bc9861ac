"""The offline `docsearch` retrieval task: corpus, BM25 search, rewards, and an agent run over it."""

from __future__ import annotations

import re

from tasks.agent import DocSearchTask, run_agent
from tasks.agent.retrieval import answer_matches, corpus, normalize_answer, search
from tasks.base import Task
from tfgrpo.llm.gateway import Gateway
from tfgrpo.llm.scripted import ScriptedBackend


def test_docsearch_splits_and_protocol():
    task = DocSearchTask()
    assert isinstance(task, Task) and task.name == "docsearch" and task.has_reference
    train, test = task.examples("train"), task.examples("test")
    assert len(train) >= 40 and len(test) >= 20
    assert not {e.id for e in train} & {e.id for e in test}
    assert task.examples("train") == train  # fixed order
    msgs = task.messages(test[0])
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "search" in msgs[0]["content"] and test[0].question in msgs[1]["content"]
    assert [t.name for t in task.tools] == ["search"]
    assert len(corpus()) >= 30


def test_docsearch_search_finds_the_supporting_document():
    task = DocSearchTask()
    one_hop = [e for s in task.splits for e in task.examples(s) if e.meta["hops"] == 1]
    found = sum(normalize_answer(e.answer) in normalize_answer(search(e.question)) for e in one_hop)
    assert found / len(one_hop) >= 0.9
    assert "825 km" in search("How long is the Zarn river?").splitlines()[0]
    assert search("zzzz qqqq").startswith("No documents matched")


def test_docsearch_rewards():
    task = DocSearchTask()
    ex = next(e for e in task.examples("train") if e.answer == "Talmere")
    assert task.reward(ex, "Thought: found it.\nFinal Answer: Talmere").score == 1.0
    assert task.reward(ex, "final answer: **the talmere.**").score == 1.0
    assert task.reward(ex, "So \\boxed{Talmere}").score == 1.0
    wrong = task.reward(ex, "Final Answer: Brenholt")
    assert wrong.score == 0.0 and wrong.extracted == "Brenholt" and wrong.format_ok
    missing = task.reward(ex, "I think it is Talmere")
    assert missing.score == 0.0 and not missing.format_ok and missing.extracted is None
    assert answer_matches("825 km", "825") and answer_matches("316,000", "316000") and not answer_matches("8250", "825")
    assert not answer_matches("825 or 900", "825")


async def test_docsearch_agent_run_with_scripted_model():
    task = DocSearchTask(max_turns=3)
    ex = next(e for e in task.examples("test") if e.meta["hops"] == 1)

    def responder(stage, messages, index):
        if messages[-1]["content"].startswith("Observation:"):
            return f"Thought: the document says it.\nFinal Answer: {ex.answer}"
        question = re.sub(r"^Question: ", "", messages[-1]["content"])
        return f"Thought: search.\nAction: search\nAction Input: {question}"

    model = Gateway(ScriptedBackend(responder), name="scripted")
    traj = await run_agent(model, task.messages(ex), task.tools, max_turns=task.max_turns, temperature=0.0,
                           max_tokens=64, seed=0, tool_timeout_s=5)
    assert traj.n_tool_calls == 1 and traj.steps[0].tool == "search" and not traj.steps[0].error
    assert normalize_answer(ex.answer) in normalize_answer(traj.steps[0].observation)
    assert task.reward(ex, traj.final_text).score == 1.0
