"""The training run's circuit breaker: a model that cannot be reached must stop the run, not "complete" it.

Single failures stay data (a failed rollout is recorded with reward 0 and kept out of learning). But when
`limit` calls in a row end unreachable (connection refused or reset, no answer in time, after the gateway's
retries), every later call would fail the same way: the next one raises `ModelUnreachable`, which the loop
treats as fatal, and the run ends as `stopped_unreachable` with everything finished stored and `--resume`
ready for when the model answers again. A call that succeeds resets the count. The policy and the learner
share one breaker when they are the same model."""

from __future__ import annotations

import os
from typing import Any

from tfgrpo.errors import LLMError, ModelUnreachable

DEFAULT_LIMIT = 8


def breaker_limit() -> int:
    """`TFGRPO_BREAKER_CALLS` (default 8): unreachable calls in a row that stop a run."""
    raw = os.environ.get("TFGRPO_BREAKER_CALLS", "")
    return max(1, int(raw)) if raw.strip().isdigit() else DEFAULT_LIMIT


class Breaker:
    """Counts unreachable calls in a row across the models it guards."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit or breaker_limit()
        self.streak = 0
        self.last: str | None = None

    def guard(self, model: Any) -> BreakerModel:
        return BreakerModel(model, self)


class BreakerModel:
    """A chat model whose unreachable failures count on a `Breaker`; every other attribute is the model's."""

    def __init__(self, inner: Any, breaker: Breaker) -> None:
        self._inner, self._breaker = inner, breaker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def chat(self, *args: Any, **kwargs: Any):
        b = self._breaker
        if b.streak >= b.limit:  # calls already in flight when the breaker tripped
            raise ModelUnreachable(_message(b))
        try:
            result = await self._inner.chat(*args, **kwargs)
        except LLMError as exc:
            if getattr(exc, "unreachable", False):
                b.streak += 1
                b.last = str(exc)
                if b.streak >= b.limit:
                    raise ModelUnreachable(_message(b)) from exc
            raise
        b.streak = 0
        return result


def _message(b: Breaker) -> str:
    return (f"{b.streak} model calls in a row could not reach the model (last: {b.last}); the run stopped and "
            "kept everything it finished: continue with --resume once the model answers")
