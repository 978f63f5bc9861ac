"""The ReAct text protocol, for models that only return text (the embedded ones do).

A reply either calls a tool:

    Thought: ...
    Action: python
    Action Input:
    ```python
    print(17 * 23)
    ```

or answers, with `Final Answer: ...` or a `\\boxed{...}`. Whichever comes first in the reply wins, so
an answer written inside tool input does not end the run. Text after the tool input that imitates an
observation (`Observation: ...`, made up by the model) is dropped. Small models often skip the
`Action:` line and just write a ```python block: when the caller names a `code_tool`, a reply with
such a block and no answer marker is taken as a call of that tool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from tasks.agent.tools import Tool
from tasks.extract import last_boxed
from tasks.agent.prompts import render

_ACTION = re.compile(r"^[ \t*]*Action[ \t*]*:[ \t*]*`?([A-Za-z_][\w-]*)`?[ \t*]*$", re.M | re.I)
_ACTION_INPUT = re.compile(r"^[ \t*]*Action[ \t]*Input[ \t*]*:[ \t*]*", re.M | re.I)
_OBSERVATION = re.compile(r"^[ \t*]*Observation[ \t*]*:", re.M | re.I)
_FINAL = re.compile(r"Final[ \t]*Answer[ \t*]*:", re.I)
_BOXED = re.compile(r"\\boxed\s*\{")
_OPEN_FENCE = re.compile(r"```[\w+-]*[ \t]*\n")
_PY_FENCE = re.compile(r"```(?:python|py|python3)[ \t]*\n", re.I)


@dataclass(frozen=True)
class Parsed:
    """A parsed reply. kind: "action" (tool + tool_input set), "final", or "none" (neither)."""

    kind: str
    text: str
    tool: str | None = None
    tool_input: str | None = None


def parse_reply(text: str, *, code_tool: str | None = None) -> Parsed:
    """Split a model reply into a tool call or a final answer (see the module docstring)."""
    action = _ACTION.search(text)
    final_pos = min((m.start() for m in (_FINAL.search(text), _BOXED.search(text)) if m), default=None)
    fence = _PY_FENCE.search(text) if action is None and final_pos is None and code_tool else None
    if fence is not None:  # a bare ```python block: an implicit call of the code tool
        end = text.find("```", fence.end())
        kept = text if end < 0 else text[: end + 3]
        return Parsed("action", kept.rstrip(), tool=code_tool, tool_input=_input_body(text[fence.start():]))
    if action is None or (final_pos is not None and final_pos < action.start()):
        return Parsed("final" if final_pos is not None else "none", text)
    rest = text[action.end():]
    inp = _ACTION_INPUT.search(rest)
    if inp is not None and not rest[: inp.start()].strip():
        body_start = inp.end()
    else:  # lenient: "Action: python" directly followed by a code block
        body_start = 0
    body = rest[body_start:]
    obs = _OBSERVATION.search(body)
    if obs is not None:
        body = body[: obs.start()]
    kept = text[: action.end()] + rest[: body_start] + body
    return Parsed("action", kept.rstrip(), tool=action.group(1), tool_input=_input_body(body))


def _input_body(body: str) -> str:
    """The tool input: the first fenced block when there is one (closed or cut off), else the text."""
    fence = _OPEN_FENCE.search(body)
    if fence is None:
        return body.strip()
    end = body.find("```", fence.end())
    return body[fence.end(): end if end >= 0 else len(body)].strip("\n")


def final_answer(text: str) -> str | None:
    """The answer span of a reply: after the last "Final Answer:" (first line), else the last \\boxed{}."""
    finals = list(_FINAL.finditer(text))
    if finals:
        tail = text[finals[-1].end():].strip()
        span = tail.splitlines()[0].strip() if tail else ""
        boxed = last_boxed(span)
        return boxed if boxed is not None else span.strip(" *`.")
    return last_boxed(text)


def input_hint(t: Tool) -> str:
    props = t.parameters.get("properties", {})
    if len(props) == 1:
        (arg, spec), = props.items()
        if arg == "code":
            return "Python code in a ```python block."
        return f"the {arg} as plain text." if spec.get("type") == "string" else f'{{"{arg}": ...}} as JSON.'
    return "a JSON object with the fields " + ", ".join(f"{k} ({v.get('type', 'any')})" for k, v in props.items())


def system_prompt(tools: Sequence[Tool], *, instructions: str = "", answer_format: str = "your answer",
                  max_turns: int = 5, example: str | None = None) -> str:
    """The ReAct system prompt (template `tasks/agent/prompts/react_system.j2`)."""
    if example is None and any(t.name == "python" for t in tools):
        example = render("react_python_example")
    listed: list[dict[str, Any]] = [
        {"name": t.name, "description": t.description, "input_hint": input_hint(t)} for t in tools]
    return render("react_system", instructions=instructions.strip(), tools=listed, example=example or "",
                  answer_format=answer_format, max_turns=max_turns)


def observation_message(observation: str, *, last: bool, call_id: str | None = None) -> dict[str, Any]:
    """The message that returns a tool result: a user "Observation:" turn in the text protocol, or a
    `role=tool` message answering `call_id` for native tool calls."""
    if call_id is not None:
        return {"role": "tool", "tool_call_id": call_id, "content": observation}
    return {"role": "user", "content": render("react_observation", observation=observation, last=last)}
