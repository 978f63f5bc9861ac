"""The ReAct agent loop on the scripted model: tool calls, observations, limits, errors, prior."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import pytest
from pydantic import Field

from tasks.agent import (AgentTask, Step, Tool, Trajectory, get_tool, parse_reply, register_tool, run_agent, tool,
                         trajectory_text)
from tasks.base import Example, Reward
from tfgrpo.errors import ConfigError, LLMError
from tfgrpo.llm.gateway import Gateway
from tfgrpo.llm.scripted import ScriptedBackend
from tfgrpo.prior import inject

QUESTION = [{"role": "system", "content": "Solve it."}, {"role": "user", "content": "What is 6*7?"}]
PY_CALL = "Thought: compute it.\nAction: python\nAction Input:\n```python\nprint(6 * 7)\n```"


def scripted(*replies: str):
    """A gateway answering turn t with replies[t] (turn = assistant messages so far); the last repeats."""
    def responder(stage, messages, index):
        turn = sum(1 for m in messages if m["role"] == "assistant")
        return replies[min(turn, len(replies) - 1)]
    backend = ScriptedBackend(responder)
    return Gateway(backend, name="scripted"), backend


async def test_agent_tool_call_then_answer():
    model, backend = scripted(PY_CALL + "\nObservation: 41 (made up)\nFinal Answer: 41", "Final Answer: \\boxed{42}")
    traj = await run_agent(model, QUESTION, [get_tool("python")], max_turns=5, temperature=0.0, max_tokens=64,
                           seed=7, tool_timeout_s=10)
    assert traj.steps == [Step("python", "print(6 * 7)", "42", False)]
    assert (traj.n_turns, traj.n_tool_calls, traj.stop_reason, traj.error) == (2, 1, "final_answer", None)
    assert traj.final_text == "Final Answer: \\boxed{42}"
    roles = [m["role"] for m in traj.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert "made up" not in traj.messages[2]["content"]  # the invented observation is dropped
    assert traj.messages[3]["content"].startswith("Observation: 42")
    assert [r["seed"] for r in backend.requests] == [7, 8]
    assert all(r["stage"] == "rollout" for r in backend.requests)
    data = json.loads(json.dumps(traj.to_dict()))
    assert Trajectory.from_dict(data) == traj and data["steps"][0]["tool"] == "python"


async def test_agent_stops_at_max_turns():
    model, backend = scripted(PY_CALL)
    traj = await run_agent(model, QUESTION, [get_tool("python")], max_turns=3, temperature=0.0, max_tokens=64,
                           seed=None, tool_timeout_s=10)
    assert (traj.n_turns, traj.n_tool_calls, traj.stop_reason, traj.final_text) == (3, 2, "max_turns", "")
    assert len(backend.requests) == 3
    assert "cannot call more tools" in traj.messages[-2]["content"]
    assert "cannot call more tools" not in traj.messages[3]["content"]


async def test_agent_tool_errors_become_observations():
    model, _ = scripted("Action: python\nAction Input:\n```python\nprint(1)\n1/0\n```",
                        "Action: calculator\nAction Input: 1+1", "Final Answer: 2")
    traj = await run_agent(model, QUESTION, [get_tool("python")], max_turns=5, temperature=0.0, max_tokens=64,
                           seed=0, tool_timeout_s=10)
    assert [s.error for s in traj.steps] == [True, True]
    assert "1\n" in traj.steps[0].observation and "ZeroDivisionError: division by zero" in traj.steps[0].observation
    assert traj.steps[1].observation.startswith("Error: unknown tool 'calculator'; available tools: python")
    assert traj.stop_reason == "final_answer" and traj.n_tool_calls == 2


async def test_agent_python_tool_timeout_is_enforced():
    model, _ = scripted("Action: python\nAction Input:\n```python\nwhile True: pass\n```", "Final Answer: none")
    traj = await run_agent(model, QUESTION, [get_tool("python")], max_turns=3, temperature=0.0, max_tokens=64,
                           seed=0, tool_timeout_s=1)
    assert traj.steps[0].error and "TimeoutError" in traj.steps[0].observation


async def test_agent_user_registered_tool():
    @register_tool(replace=True)
    def add_numbers(a: int, b: int = 0) -> int:
        """Add two integers."""
        if a < 0:
            raise ValueError("a must be >= 0")
        return a + b

    @register_tool(name="slow_tool", timeout_s=0.2, replace=True)
    async def slow(text: str) -> str:
        """Sleep too long."""
        await asyncio.sleep(5)
        return text

    model, _ = scripted('Action: add_numbers\nAction Input: {"a": 2, "b": 40}',
                        'Action: add_numbers\nAction Input: {"a": "x"}',
                        'Action: add_numbers\nAction Input: {"a": -1}',
                        "Action: slow_tool\nAction Input: hi", "Final Answer: \\boxed{42}")
    tools = [get_tool("add_numbers"), get_tool("slow_tool")]
    traj = await run_agent(model, QUESTION, tools, max_turns=6, temperature=0.0, max_tokens=64, seed=0,
                           tool_timeout_s=10)
    obs = [s.observation for s in traj.steps]
    assert obs[0] == "42" and not traj.steps[0].error
    assert obs[1].startswith("Error: invalid input for tool add_numbers: a:")
    assert obs[2] == "Error: ValueError: a must be >= 0"
    assert obs[3] == "Error: tool slow_tool timed out after 0.2 s"
    assert traj.stop_reason == "final_answer"
    spec = tools[0].openai_spec()["function"]
    assert spec["name"] == "add_numbers" and spec["description"] == "Add two integers."
    assert spec["parameters"]["properties"]["a"]["type"] == "integer" and spec["parameters"]["required"] == ["a"]
    with pytest.raises(ConfigError):
        register_tool(add_numbers.fn)  # already registered


def test_tool_decorator_and_type_hints():
    @tool
    def lookup(key: Annotated[str, Field(description="what to look up")], limit: int = 3) -> str:
        """Look a key up.

        Longer details that are not part of the description."""
        return key * limit

    assert isinstance(lookup, Tool) and lookup.description == "Look a key up."
    assert lookup.parameters["properties"]["key"]["description"] == "what to look up"
    assert lookup.parse_args('{"key": "ab", "limit": 2}') == {"key": "ab", "limit": 2}
    with pytest.raises(ValueError, match="JSON object"):
        lookup.parse_args("plain text")
    assert lookup.signature_text() == "lookup(key: string, limit: integer)"


def test_tool_needs_type_hints():
    def untyped(x):
        return x
    with pytest.raises(ConfigError, match="needs a type hint"):
        Tool.from_function(untyped)


async def test_agent_prior_is_injected_into_initial_messages():
    model, backend = scripted("Final Answer: 42")
    traj = await run_agent(model, QUESTION, [get_tool("python")], max_turns=2, temperature=0.0, max_tokens=64,
                           seed=0, tool_timeout_s=5,
                           apply_prior=lambda msgs: inject(msgs, "[E1] Check your arithmetic.", "system"))
    assert backend.requests[0]["messages"][0]["content"] == "Solve it.\n\n[E1] Check your arithmetic."
    assert QUESTION[0]["content"] == "Solve it."
    assert traj.n_turns == 1 and traj.n_tool_calls == 0


async def test_agent_model_failure_is_recorded():
    def responder(stage, messages, index):
        raise LLMError("backend refused", retryable=False)
    model = Gateway(ScriptedBackend(responder), name="scripted")
    traj = await run_agent(model, QUESTION, [get_tool("python")], max_turns=2, temperature=0.0, max_tokens=64,
                           seed=0, tool_timeout_s=5)
    assert traj.stop_reason == "error" and "backend refused" in traj.error and traj.final_text == ""


def test_parse_reply_variants():
    assert parse_reply("The answer is \\boxed{3}.").kind == "final"
    assert parse_reply("just text").kind == "none"
    p = parse_reply("Final Answer: 5\nAction: python\nAction Input: print(1)")
    assert p.kind == "final"
    p = parse_reply("Action: python\n```python\nprint('\\\\boxed{1}')\n```\nObservation: 1\nFinal Answer: 1")
    assert (p.kind, p.tool, p.tool_input) == ("action", "python", "print('\\\\boxed{1}')")
    assert "Observation" not in p.text
    p = parse_reply("**Action:** search\n**Action Input:** Zarn river length\n")
    assert (p.kind, p.tool, p.tool_input) == ("action", "search", "Zarn river length")
    p = parse_reply("Action: python\nAction Input:\n```python\nx = 1")  # cut off mid-block
    assert p.tool_input == "x = 1"


def test_trajectory_text_is_compact():
    steps = [Step("python", "print(%d)\n" % i + "x = 1\n" * 200, "out " * 500, i == 2) for i in range(4)]
    traj = Trajectory(messages=[], steps=steps, final_text="Final Answer: 7", n_tool_calls=4, n_turns=5,
                      stop_reason="final_answer")
    text = trajectory_text(traj, max_chars=1500)
    assert len(text) <= 1500
    assert "Step 1: python" in text and "Step 3: python (failed)" in text and "Final Answer: 7" in text
    assert "[4 tool call(s), 5 turn(s), stopped: final_answer]" in text
    short = trajectory_text(Trajectory(messages=[], final_text="\\boxed{1}", n_turns=1, stop_reason="final_answer"))
    assert "Final reply:\n\\boxed{1}" in short


class BoxedTask:
    """A tiny task in the base protocol: the reward checks the last \\boxed{}."""

    name, has_reference, splits = "tiny", True, ("train", "test")

    def examples(self, split):
        return [Example("t1", "What is 6*7?", "42")]

    def messages(self, example):
        return [{"role": "system", "content": "Put the answer in \\boxed{}."},
                {"role": "user", "content": example.question}]

    def reward(self, example, completion):
        ok = f"\\boxed{{{example.answer}}}" in completion
        return Reward(1.0 if ok else 0.0, "match" if ok else "no match")


async def test_agent_task_wraps_a_base_task():
    task = AgentTask(BoxedTask(), max_turns=3)
    ex = task.examples("train")[0]
    msgs = task.messages(ex)
    assert "Put the answer in \\boxed{}." in msgs[0]["content"] and "Action: python" in msgs[0]["content"]
    assert "\\boxed{}" in msgs[0]["content"] and msgs[1] == {"role": "user", "content": "What is 6*7?"}
    model, _ = scripted(PY_CALL, "The tool says 42.\nFinal Answer: 42")
    traj = await task.rollout(model, ex, seed=1)
    assert traj.n_tool_calls == 1 and traj.stop_reason == "final_answer"
    assert task.reward(ex, traj.final_text).score == 1.0  # "Final Answer: 42" read as \boxed{42}
    assert task.reward(ex, "Final Answer: 41").score == 0.0


def test_parse_reply_bare_python_block_is_a_call_when_a_code_tool_exists():
    reply = "Let me compute.\n```python\nprint(17 * 23)\n```\nThis prints 391."
    assert parse_reply(reply).kind == "none"
    p = parse_reply(reply, code_tool="python")
    assert (p.kind, p.tool, p.tool_input) == ("action", "python", "print(17 * 23)")
    assert p.text.endswith("```") and "391" not in p.text
    assert parse_reply(reply + "\nFinal Answer: 391", code_tool="python").kind == "final"


async def test_agent_task_on_the_builtin_arith_task():
    from tasks.registry import get_task

    from tasks.agent import as_agent_task

    task = as_agent_task(get_task("arith"), max_turns=3)
    ex = task.examples("test")[0]

    def responder(stage, messages, index):
        last = messages[-1]["content"]
        if last.startswith("Observation:"):
            return "Final Answer: \\boxed{" + last.split()[1] + "}"
        return f"Action: python\nAction Input:\n```python\nprint({ex.answer!r})\n```"

    traj = await task.rollout(Gateway(ScriptedBackend(responder), name="scripted"), ex, seed=0)
    assert traj.n_tool_calls == 1 and traj.stop_reason == "final_answer"
    assert task.name == "arith" and task.reward(ex, traj.final_text).score == 1.0
    with pytest.raises(ValueError):
        as_agent_task(task, agent="plan-and-execute")


def test_is_tool_task_tells_agent_tasks_from_plain_ones():
    from tasks.base import ToolTask, is_tool_task
    from tasks.registry import load_task

    agent, plain = AgentTask(BoxedTask(), max_turns=3), BoxedTask()
    assert is_tool_task(agent) and isinstance(agent, ToolTask)
    assert not is_tool_task(plain) and not is_tool_task(load_task("arith"))

    class NotCallable(BoxedTask):
        rollout = "not a method"

    assert not is_tool_task(NotCallable())
