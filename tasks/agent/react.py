"""The ReAct agent loop as a LangGraph `StateGraph`: START -> model -> (tools -> model)* -> END.

The `model` node calls the `ChatModel` once per turn and parses the reply with the text protocol
(`tasks.agent.protocol`): a tool call goes to the `tools` node, whose observations are appended as
messages before the next model turn; a final answer, a reply with neither, a failed model call, or the
last allowed turn ends the run. Tool failures (bad input, exceptions, timeouts, unknown tools) become
`Error: ...` observations; only budget exhaustion and other system-wide faults raise.

Native tool calling: `AgentState.pending` holds calls as `{"id", "tool", "input"}`. The text protocol
fills `id=None` and a text input; a backend with OpenAI tool calling would fill them from the
completion's `tool_calls` (`id` set, `input` a dict), send `[t.openai_spec() for t in tools]` with
the request, keep the assistant message's `tool_calls`, and the `tools` node already answers such calls
with `role=tool` messages (`protocol.observation_message(call_id=...)`). Only the model node changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TypedDict

from langgraph.graph import END, START, StateGraph

from tasks.agent.protocol import observation_message, parse_reply
from tasks.agent.tools import Tool
from tasks.agent.trajectory import Step, Trajectory, clip
from tfgrpo_common.errors import ConfigError, LLMError
from tfgrpo_common.chat import ChatModel, Message

ApplyPrior = Callable[[list[Message]], list[Message]]


class AgentState(TypedDict):
    messages: list[Message]
    steps: list[Step]
    pending: list[dict[str, Any]]
    turns: int
    final_text: str
    stop_reason: str
    error: str | None
    prompt_tokens: int
    completion_tokens: int


@dataclass
class AgentSettings:
    """Everything one run needs besides the messages."""

    model: ChatModel
    tools: dict[str, Tool]
    max_turns: int = 5
    temperature: float = 0.7
    max_tokens: int = 512
    seed: int | None = None
    stage: str = "rollout"
    tool_timeout_s: float = 10.0
    max_observation_chars: int = 2000
    meta: dict[str, Any] = field(default_factory=dict)


async def run_agent(model: ChatModel, messages: list[Message], tools: Sequence[Tool], *, max_turns: int = 5,
                    temperature: float = 0.7, max_tokens: int = 512, seed: int | None = None,
                    stage: str = "rollout", tool_timeout_s: float = 10.0,
                    apply_prior: ApplyPrior | None = None, meta: dict[str, Any] | None = None,
                    max_observation_chars: int = 2000) -> Trajectory:
    """Run the ReAct loop on `messages` (the task's messages, WITHOUT the prior: `apply_prior` puts it
    in, exactly as in plain mode) with at most `max_turns` model calls. Model turn t uses seed
    `seed + t` (t from 0). Returns the trajectory; the task scores `trajectory.final_text`."""
    if max_turns < 1:
        raise ConfigError("max_turns must be >= 1")
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise ConfigError(f"tool names must be unique, got {names}")
    settings = AgentSettings(model, {t.name: t for t in tools}, max_turns, temperature, max_tokens, seed, stage,
                             tool_timeout_s, max_observation_chars, dict(meta or {}))
    start = apply_prior(list(messages)) if apply_prior is not None else [dict(m) for m in messages]
    state: AgentState = {"messages": start, "steps": [], "pending": [], "turns": 0, "final_text": "",
                         "stop_reason": "", "error": None, "prompt_tokens": 0, "completion_tokens": 0}
    final = await build_graph(settings).ainvoke(state, config={"recursion_limit": 2 * max_turns + 4})
    return Trajectory(
        messages=final["messages"], steps=final["steps"], final_text=final["final_text"],
        n_tool_calls=len(final["steps"]), n_turns=final["turns"], error=final["error"],
        stop_reason=final["stop_reason"], prompt_tokens=final["prompt_tokens"],
        completion_tokens=final["completion_tokens"])


def build_graph(settings: AgentSettings):
    """The compiled graph for one run's settings."""
    async def model_node(state: AgentState) -> dict[str, Any]:
        return await _model_step(settings, state)

    async def tools_node(state: AgentState) -> dict[str, Any]:
        return await _tools_step(settings, state)

    graph = StateGraph(AgentState)
    graph.add_node("model", model_node)
    graph.add_node("tools", tools_node)
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", _route, ["tools", END])
    graph.add_edge("tools", "model")
    return graph.compile()


def _route(state: AgentState) -> str:
    return "tools" if state["pending"] else END


async def _model_step(s: AgentSettings, state: AgentState) -> dict[str, Any]:
    turn = state["turns"] + 1
    seed = None if s.seed is None else s.seed + state["turns"]
    try:
        completions = await s.model.chat(state["messages"], temperature=s.temperature, max_tokens=s.max_tokens,
                                         n=1, stage=s.stage, seed=seed, meta={**s.meta, "agent_turn": turn})
    except LLMError as exc:  # a failed rollout is data: recorded, scored 0 by the caller
        return {"turns": turn, "error": str(exc), "stop_reason": "error", "pending": []}
    c = completions[0]
    usage = {"turns": turn, "prompt_tokens": state["prompt_tokens"] + c.prompt_tokens,
             "completion_tokens": state["completion_tokens"] + c.completion_tokens}
    parsed = parse_reply(c.text, code_tool="python" if "python" in s.tools else None)
    if parsed.kind != "action":
        return {**usage, "messages": state["messages"] + [{"role": "assistant", "content": c.text}],
                "final_text": c.text, "stop_reason": "final_answer" if parsed.kind == "final" else "no_action",
                "pending": []}
    messages = state["messages"] + [{"role": "assistant", "content": parsed.text}]
    if turn >= s.max_turns:
        return {**usage, "messages": messages, "final_text": "", "stop_reason": "max_turns", "pending": []}
    call = {"id": None, "tool": parsed.tool, "input": parsed.tool_input or ""}
    return {**usage, "messages": messages, "pending": [call]}


async def _tools_step(s: AgentSettings, state: AgentState) -> dict[str, Any]:
    steps, messages = list(state["steps"]), list(state["messages"])
    last = state["turns"] + 1 >= s.max_turns
    for call in state["pending"]:
        observation, is_error = await _execute(s, call["tool"], call["input"])
        steps.append(Step(call["tool"], call["input"], observation, is_error))
        messages.append(observation_message(clip(observation, s.max_observation_chars), last=last,
                                            call_id=call.get("id")))
    return {"steps": steps, "messages": messages, "pending": []}


async def _execute(s: AgentSettings, name: str, tool_input: Any) -> tuple[str, bool]:
    tool = s.tools.get(name) or next((t for n, t in s.tools.items() if n.lower() == name.lower()), None)
    if tool is None:
        return f"Error: unknown tool {name!r}; available tools: {', '.join(s.tools) or 'none'}", True
    timeout = tool.timeout_s if tool.timeout_s is not None else s.tool_timeout_s
    return await tool.call(tool_input, timeout_s=timeout)
