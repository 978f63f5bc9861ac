"""The chat seam shared by every layer: messages, completions, the `ChatModel` protocol, the call record
and the `CallLog` protocol. Implementations live in `tfgrpo.llm`."""

from __future__ import annotations

import time
import uuid
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

Message = dict[str, Any]


class Completion(BaseModel):
    """One sampled answer. `finish_reason == "length"` means the text was truncated."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    model: str = ""
    latency_s: float = 0.0
    call_id: str = ""

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@runtime_checkable
class ChatModel(Protocol):
    """The seam every model implements.

    `chat` returns exactly `n` completions for `messages` (emulating `n` with separate requests where
    the backend ignores it). Each completion carries usage tokens, USD cost (0 for local models) and
    `finish_reason` so callers can see truncation. `stage` labels the call in the call log
    ("rollout", "summarize", "extract", "consolidate", "eval", "proxy", ...). Transient faults are
    retried inside; a permanent fault raises `tfgrpo_common.errors.LLMError`.
    """

    name: str

    async def chat(
        self,
        messages: list[Message],
        *,
        temperature: float = 0.7,
        max_tokens: int = 512,
        n: int = 1,
        stage: str = "chat",
        seed: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> list[Completion]: ...


class CallRecord(BaseModel):
    """One LLM call as the gateway saw it. Persisted by whatever `CallLog` is attached."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    ts: float = Field(default_factory=time.time)
    model: str = ""
    stage: str = "chat"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    request: list[Message] = Field(default_factory=list)
    response: str | None = None
    finish_reason: str | None = None
    error: str | None = None
    attempts: int = 1
    run_id: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


@runtime_checkable
class CallLog(Protocol):
    """Receives every call record. Implementations must be cheap and must not raise."""

    def record(self, rec: CallRecord) -> None: ...
