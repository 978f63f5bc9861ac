"""`AgentTask`: any task, answered by the ReAct agent with tools (`--agent react`).

It keeps the base task's data and reward and replaces its system message with the ReAct protocol
(the base instructions are kept inside it). `rollout` runs one agent episode and returns the
trajectory; the reward is the base task's reward of `trajectory.final_text`, where a
"Final Answer: X" without a box is read as `\\boxed{X}` so math rewards can parse it.
"""

from __future__ import annotations

from typing import Any, Sequence

from tasks.agent.protocol import final_answer, last_boxed, system_prompt
from tasks.agent.react import ApplyPrior, run_agent
from tasks.agent.sandbox import DEFAULT_SANDBOX
from tasks.agent.tools import Tool, get_tool, python_tool
from tasks.agent.trajectory import Trajectory
from tasks.base import Example, Reward
from tfgrpo_common.chat import ChatModel

BOXED_FORMAT = "the final answer inside \\boxed{}, e.g. Final Answer: \\boxed{42}"


class AgentTask:
    """Wrap `base` (a `Task`) so it is solved by the ReAct agent with `tools` (default: the python tool).

    `answer_format` tells the model how to write its final answer; by default \\boxed{} when the base
    task's prompt asks for it. A base task with its own `tools` (e.g. `docsearch`) keeps them, its
    messages and its `max_turns`. `sandbox` is where the default python tool runs (`bwrap` | `process`).
    Implements the `ToolTask` protocol (a `Task` with `rollout`)."""

    def __init__(self, base: Any, tools: Sequence[Tool] | None = None, *, max_turns: int | None = None,
                 tool_timeout_s: float = 10.0, answer_format: str | None = None,
                 sandbox: str = DEFAULT_SANDBOX) -> None:
        self.base = base
        default = get_tool("python") if sandbox == DEFAULT_SANDBOX else python_tool(sandbox=sandbox)
        self.tools = list(tools) if tools is not None else list(getattr(base, "tools", None) or [default])
        self.max_turns = max_turns if max_turns is not None else getattr(base, "max_turns", 5)
        self.tool_timeout_s = tool_timeout_s
        self.answer_format = answer_format
        self.name = base.name
        self.has_reference = base.has_reference
        self.splits = tuple(base.splits)

    def examples(self, split: str) -> list[Example]:
        return self.base.examples(split)

    def messages(self, example: Example) -> list[dict[str, Any]]:
        base = [dict(m) for m in self.base.messages(example)]
        if getattr(self.base, "requires_agent", False):
            return base  # the task already describes its tools
        instructions = ""
        if base and base[0].get("role") == "system":
            instructions = str(base.pop(0).get("content", ""))
        fmt = self.answer_format or (BOXED_FORMAT if "boxed" in _all_text(base, instructions) else "your answer")
        system = system_prompt(self.tools, instructions=instructions, answer_format=fmt, max_turns=self.max_turns)
        return [{"role": "system", "content": system}] + base

    def reward(self, example: Example, completion: str) -> Reward:
        return self.base.reward(example, answer_text(completion))

    async def rollout(self, model: ChatModel, example: Example, *, apply_prior: ApplyPrior | None = None,
                      temperature: float = 0.7, max_tokens: int = 512, seed: int | None = None,
                      stage: str = "rollout", meta: dict[str, Any] | None = None) -> Trajectory:
        """One agent episode on `example` (prior applied to the initial messages by `apply_prior`)."""
        return await run_agent(model, self.messages(example), self.tools, max_turns=self.max_turns,
                               temperature=temperature, max_tokens=max_tokens, seed=seed, stage=stage,
                               tool_timeout_s=self.tool_timeout_s, apply_prior=apply_prior, meta=meta)


def answer_text(completion: str) -> str:
    """`completion`, with `\\boxed{X}` appended when it gives "Final Answer: X" without any box."""
    if last_boxed(completion) is not None:
        return completion
    answer = final_answer(completion)
    return f"{completion}\n\\boxed{{{answer}}}" if answer else completion


def _all_text(messages: list[dict[str, Any]], extra: str) -> str:
    return extra + " ".join(str(m.get("content", "")) for m in messages)
