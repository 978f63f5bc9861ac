"""One learner call with validation: ask, parse, retry a malformed answer (each refusal recorded with the
raw text), give up after `retries`. A failed call (not a budget stop or a fatal model error, which raise)
ends the attempts: it is recorded, and the caller decides what an empty answer means."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from tfgrpo.errors import LLMError
from tfgrpo.loop.learner_parse import InvalidLearnerOutput
from tfgrpo_common.chat import ChatModel

T = TypeVar("T")
Reject = Callable[[str, str, str], None]  # (stage, reason, raw text)
Parse = Callable[[str, "str | None"], T]  # (text, finish_reason) -> value; raises InvalidLearnerOutput


def no_reject(stage: str, reason: str, raw: str) -> None:
    """For callers that keep no record of refused outputs."""


@dataclass
class LearnerAnswer(Generic[T]):
    """The parsed value (None when every attempt failed), the accepted call's id, the last error."""

    value: T | None
    call_id: str | None = None
    error: str | None = None


async def ask_learner(model: ChatModel, prompt: str, parse: Parse[T], *, stage: str, retries: int,
                      temperature: float, max_tokens: int, seed: int, reject: Reject = no_reject,
                      meta: dict[str, Any] | None = None) -> LearnerAnswer[T]:
    """Up to `retries + 1` calls (seeds `seed`, `seed + 1`, ...) until `parse` accepts an answer."""
    error = None
    for attempt in range(retries + 1):
        try:
            [c] = await model.chat([{"role": "user", "content": prompt}], temperature=temperature,
                                   max_tokens=max_tokens, stage=stage, seed=seed + attempt, meta=meta)
        except LLMError as exc:
            if exc.fatal:
                raise
            error = f"learner call failed: {exc}"
            reject(stage, error, "")
            break
        try:
            return LearnerAnswer(parse(c.text, c.finish_reason), c.call_id)
        except InvalidLearnerOutput as exc:
            error = str(exc)
            reject(stage, f"attempt {attempt + 1}: {exc}", c.text)
    return LearnerAnswer(None, None, error)
