"""A deterministic scripted model for fast unit tests of control flow (ships in the package).

It goes through the real gateway (retries, n-emulation, call log, budgets), so only the transport is
scripted. A responder maps (stage, messages, call index) to a reply text, a `(text, finish_reason)`
pair, or raises to simulate a fault."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from typing import Any, Callable

from tfgrpo.llm.backends import RawChoice, RawResponse

Reply = str | tuple[str, str]
Responder = Callable[[str, list[dict], int], Reply]


def _words(messages: list[dict]) -> int:
    return sum(len(str(m.get("content", "")).split()) for m in messages)


def default_responder(stage: str, messages: list[dict], index: int) -> Reply:
    """Echo-style replies: answers math with the first number it sees, learner stages with valid JSON."""
    last = str(messages[-1].get("content", "")) if messages else ""
    if stage in ("rollout", "eval", "gate", "chat", "proxy"):
        nums = re.findall(r"-?\d+", last)
        return f"Thinking step by step. The answer is \\boxed{{{nums[0] if nums else 0}}}."
    if stage == "summarize":
        return "The rollout computed the result directly and stated it in a box."
    if stage == "extract":
        return '{"experiences": ["When a question has several steps, write each intermediate result before the final answer."]}'
    if stage == "consolidate":
        return '{"ops": [{"op": "ADD", "text": "Write each intermediate result before the final answer.", "reason": "winners did"}]}'
    return "ok"


class ScriptedBackend:
    """Backend whose replies come from a responder function; counts every request it receives."""

    native_n = False

    def __init__(self, responder: Responder | None = None, model: str = "scripted") -> None:
        self.responder = responder or default_responder
        self.model = model
        self._counter = itertools.count()
        self.requests: list[dict[str, Any]] = []

    async def send(self, messages, *, temperature, max_tokens, n, seed, timeout, extra=None, stage="chat"):
        index = next(self._counter)
        delay = float(os.environ.get("TFGRPO_SCRIPTED_DELAY", "0") or 0)  # lets crash tests kill mid-call
        if delay:
            await asyncio.sleep(delay)
        self.requests.append({"stage": stage, "messages": messages, "seed": seed, "temperature": temperature})
        reply = self.responder(stage, messages, index)
        text, finish = (reply, "stop") if isinstance(reply, str) else reply
        return RawResponse(choices=[RawChoice(text, finish)], prompt_tokens=_words(messages),
                           completion_tokens=len(text.split()), model=self.model)

    async def aclose(self) -> None:
        return None
