"""Types shared across the LLM seam: messages, completions, the call log record and protocols."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
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
    retried inside; a permanent fault raises `tfgrpo.errors.LLMError`.
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


class MemoryCallLog:
    """Keeps call records in a list (tests, short scripts)."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []
        self._lock = threading.Lock()

    def record(self, rec: CallRecord) -> None:
        with self._lock:
            self.records.append(rec)


class JsonlCallLog:
    """Appends call records to a JSONL file, one object per line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def record(self, rec: CallRecord) -> None:
        line = json.dumps(rec.model_dump(mode="json"), ensure_ascii=False)
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


class FanoutCallLog:
    """Sends each record to several logs."""

    def __init__(self, *logs: CallLog) -> None:
        self.logs = [log for log in logs if log is not None]

    def record(self, rec: CallRecord) -> None:
        for log in self.logs:
            log.record(rec)


class BufferedCallLog:
    """Collects records and writes them in batches (`record_many` when the sink has it): one store
    transaction per batch instead of one per call. Call `flush()` before anything that must see them."""

    def __init__(self, sink: CallLog, max_buffer: int = 64) -> None:
        self.sink = sink
        self.max_buffer = max_buffer
        self._buf: list[CallRecord] = []
        self._lock = threading.Lock()

    def record(self, rec: CallRecord) -> None:
        with self._lock:
            self._buf.append(rec)
            full = len(self._buf) >= self.max_buffer
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            recs, self._buf = self._buf, []
        if not recs:
            return
        many = getattr(self.sink, "record_many", None)
        if many is not None:
            many(recs)
        else:
            for rec in recs:
                self.sink.record(rec)
