"""What the fake OpenAI-compatible server answers (`bench/fake_server.py`), and `tests/faultserver.py` too
with `plausible=True`: the pipeline stage a request belongs to, recognised from the prompt text
(`stage_of`), content that fits it (`reply_for`: a boxed answer, a summary, learner JSON that validates,
a GEPA instruction), and the chat.completion body and stream events that carry it."""

from __future__ import annotations

import json
import random
import re
import time
from typing import Any

MARKERS = (
    ("summarize", "You are reviewing one attempt at a problem"),
    ("extract", "Several attempts at the same problem were scored"),
    ("extract_all_wrong", "Every attempt at this problem failed"),
    ("consolidate", "You maintain a short library of lessons"),
    ("reflect", "I provided an assistant with"),
)
LESSONS = (
    "Write each intermediate quantity with its unit before combining them.",
    "Round up when a count of containers must hold every item.",
    "Convert minutes to hours before multiplying by an hourly rate.",
    "Subtract the smaller amount only after both totals are computed.",
    "Ignore numbers that do not affect the asked quantity.",
    "Check the final answer against the question's unit and wording.",
)


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def stage_of(messages: list[dict]) -> str:
    """The pipeline stage a request belongs to: summarize, extract, extract_all_wrong, consolidate,
    reflect (GEPA), or rollout (anything else)."""
    last = _text(messages[-1].get("content")) if messages and isinstance(messages[-1], dict) else ""
    for stage, marker in MARKERS:
        if last.lstrip().startswith(marker):
            return stage
    return "rollout"


def _question(messages: list[dict]) -> str:
    users = [_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    text = users[-1] if users else ""
    return text.split("\n\nPlease reason step by step")[0].strip()


def _rollout(body: dict, answers: dict[str, str]) -> str:
    question = _question(body.get("messages") or [])
    nums = re.findall(r"\d+", question)
    gold = answers.get(question)
    seed = body.get("seed")
    correct = gold is not None and (random.random() < 0.5 if seed is None else int(seed) % 2 == 0)
    answer = gold if correct else str(int(nums[-1]) + 1 if nums else 7)
    steps = " + ".join(nums[:3]) or "0"
    return (f"First I collect the quantities: {steps}. Then I combine them step by step, checking each "
            f"operation against the question. So the result is \\boxed{{{answer}}}.")


def _numbered(prompt: str, header: str) -> list[tuple[str, str]]:
    """The `N: text` lines right after `header`."""
    part = prompt.split(header, 1)[1] if header in prompt else ""
    out = []
    for line in part.splitlines()[1:]:
        head, _, text = line.partition(": ")
        if not head.strip().isdigit():
            break
        out.append((head.strip(), text.strip()))
    return out


def _consolidate(prompt: str) -> str:
    props = _numbered(prompt, "New candidate lessons")
    library = _numbered(prompt, "Current library")
    ops: list[dict[str, Any]] = [{"op": "ADD", "text": text, "from": [int(n)], "reason": "new and general"}
                                 for n, text in props[:2]]
    if library and len(props) > 2:
        ops.append({"op": "UPDATE", "id": int(library[0][0]), "text": props[2][1], "from": [3],
                    "reason": "sharper wording"})
    return json.dumps({"ops": ops})


def reply_for(stage: str, body: dict, answers: dict[str, str] | None = None) -> str:
    """Plausible content for `stage` (see the docstring of `bench/fake_server.py`)."""
    messages = body.get("messages") or []
    prompt = _text(messages[-1].get("content")) if messages else ""
    if stage == "summarize":
        return ("The attempt listed the quantities, combined them in order and boxed the result. It went "
                "wrong at the last step: it added where the question asked for the remaining amount.")
    if stage in ("extract", "extract_all_wrong"):
        h = sum(map(ord, prompt[:400]))
        return json.dumps({"experiences": [LESSONS[h % len(LESSONS)], LESSONS[(h + 1) % len(LESSONS)]]})
    if stage == "consolidate":
        return _consolidate(prompt)
    if stage == "reflect":
        return "```\nSolve the word problem step by step, write each intermediate result, and box the answer.\n```"
    return _rollout(body, answers or {})


def completion_body(text: str, finish: str = "stop", model: str = "fake", prompt_words: int = 10) -> dict:
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_words, "completion_tokens": len(text.split()),
                  "total_tokens": prompt_words + len(text.split())},
    }


def stream_events(reply: dict, *, usage: bool, parts: int = 6) -> list[bytes]:
    """A chat.completion as the SSE events of a stream: the role, the text in `parts` pieces, the finish
    reason, then usage when asked for (without the final `[DONE]`)."""
    choice = reply["choices"][0]
    text = choice["message"]["content"] or ""
    words = text.split(" ")
    step = max(1, -(-len(words) // parts))
    pieces = [" ".join(words[i:i + step]) + (" " if i + step < len(words) else "") for i in range(0, len(words), step)]
    base = {"id": reply["id"], "object": "chat.completion.chunk", "created": reply["created"], "model": reply["model"]}
    deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in pieces]
    chunks = [base | {"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    chunks.append(base | {"choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]})
    if usage:
        chunks.append(base | {"choices": [], "usage": reply["usage"]})
    return [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks]
