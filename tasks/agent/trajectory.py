"""What one agent run produced, as a JSON-serializable record, and its compact text for the learner."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple


class Step(NamedTuple):
    """One tool call: which tool, its input (text, or the argument object of a native call), and the
    observation the model got back. `error` is True when the call failed (bad input, tool error,
    timeout, unknown tool)."""

    tool: str
    input: Any
    observation: str
    error: bool = False


@dataclass
class Trajectory:
    """An agent run. `final_text` is what the task's reward reads. `n_turns` counts model calls,
    `n_tool_calls` tool calls (failed ones included). `stop_reason` is one of "final_answer" (the model
    answered), "no_action" (a reply with neither a tool call nor an answer marker; taken as the
    answer), "max_turns" (turn budget spent while still calling tools), "error" (the model call failed;
    `error` says why)."""

    messages: list[dict[str, Any]]
    steps: list[Step] = field(default_factory=list)
    final_text: str = ""
    n_tool_calls: int = 0
    n_turns: int = 0
    error: str | None = None
    stop_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = [s._asdict() for s in self.steps]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Trajectory":
        data = dict(data)
        data["steps"] = [Step(**s) for s in data.get("steps", [])]
        return cls(**data)


def clip(text: str, limit: int) -> str:
    """`text` cut to about `limit` characters, keeping its head and tail."""
    text = text.strip()
    if len(text) <= limit:
        return text
    if limit < 40:
        return text[: max(0, limit - 3)] + "..."
    head = (limit - 20) * 2 // 3
    tail = limit - 20 - head
    return f"{text[:head]} …[{len(text) - head - tail} chars]… {text[-tail:]}"


def _input_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        import json
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def trajectory_text(traj: Trajectory, max_chars: int = 4000) -> str:
    """The run as compact text for the learner's summarize prompt: each tool call with its input and
    observation (long ones clipped head + tail), then the final answer and how the run stopped."""
    footer = (f"[{traj.n_tool_calls} tool call(s), {traj.n_turns} turn(s), stopped: {traj.stop_reason or '?'}"
              + (f"; error: {traj.error}" if traj.error else "") + "]")
    final = f"Final reply:\n{traj.final_text.strip() or '(none)'}"
    budget = max(200, max_chars - len(footer) - 2)
    final = clip(final, max(100, budget // 3)) if traj.steps else clip(final, budget)
    per_step = max(80, (budget - len(final)) // max(1, len(traj.steps)))
    lines = []
    for i, step in enumerate(traj.steps, 1):
        mark = " (failed)" if step.error else ""
        lines.append(f"Step {i}: {step.tool}{mark}\n"
                     f"  input: {clip(_input_text(step.input), per_step // 2)}\n"
                     f"  observation: {clip(step.observation, per_step // 2)}")
    text = "\n".join(lines + [final, footer])
    return clip(text, max_chars) if len(text) > max_chars else text
