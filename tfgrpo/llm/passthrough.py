"""Forward whole OpenAI chat-completions request bodies through the gateway (the proxy's path).

Same policy as `Gateway.chat`: concurrency limit, timeout, retries of transient faults, budget, every
call in the call log. What differs: the request's own parameters (tools, stop, response_format, ...) go
to the upstream as they are, the upstream's JSON comes back whole, and responses can be streamed.
Backends without `send_body` / `open_stream` (the scripted model) are served through `send`."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, AsyncIterator

from tfgrpo_common.event_loop import gather_or_cancel
from tfgrpo.errors import LLMError
from tfgrpo.llm.backends import LiteLLMBackend, RawResponse, estimate_cost
from tfgrpo.llm.openai_shapes import merge_responses, replay_as_chunks
from tfgrpo_common.chat import CallRecord

Body = dict[str, Any]


def _max_tokens(body: Body) -> int | None:
    """The completion budget a request body asks for (None: the upstream's default)."""
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    try:
        return int(value) if value else None
    except (TypeError, ValueError):
        return None


class PassthroughMixin:
    """`complete(body)` and `open_stream(body)` for `Gateway` (which provides the attributes used here)."""

    async def complete(self, body: Body, *, stage: str = "proxy", meta: dict[str, Any] | None = None) -> Body:
        """Send one chat-completions body; returns the upstream's chat.completion JSON object.
        `n > 1` is emulated with separate requests where the backend ignores `n`."""
        n = int(body.get("n") or 1)
        if n > 1 and not self.backend.native_n:
            seed = body.get("seed")
            bodies = [{**body, "n": 1, **({"seed": seed + i} if isinstance(seed, int) else {})} for i in range(n)]
            parts = await gather_or_cancel(*[self._complete_one(b, stage, meta) for b in bodies])
            return merge_responses(list(parts))
        return await self._complete_one(body, stage, meta)

    async def _complete_one(self, body: Body, stage: str, meta: dict[str, Any] | None) -> Body:
        rec = self._new_record(body, stage, meta)
        start = time.perf_counter()
        try:
            async with self._sem():
                start = time.perf_counter()
                timeout = self.call_timeout(_max_tokens(body))
                raw, attempts = await self._retry(lambda: self._send_body(body, stage, timeout), timeout=timeout)
        except LLMError as exc:
            self._failed(rec, exc, start)
            raise
        rec.latency_s, rec.attempts = time.perf_counter() - start, attempts
        self._finish(rec, raw)
        data = raw.extra["body"]
        data.setdefault("usage", {"prompt_tokens": raw.prompt_tokens, "completion_tokens": raw.completion_tokens,
                                  "total_tokens": raw.prompt_tokens + raw.completion_tokens})
        return data

    async def _send_body(self, body: Body, stage: str, timeout: float) -> RawResponse:
        send_body = getattr(self.backend, "send_body", None)
        if send_body is not None:
            return await send_body(body, timeout=timeout)
        temperature = body.get("temperature")
        raw = await self.backend.send(
            body["messages"], temperature=1.0 if temperature is None else float(temperature),
            max_tokens=_max_tokens(body) or 512, n=1, seed=body.get("seed"), timeout=timeout, stage=stage)
        raw.extra["body"] = body_from_raw(raw)
        return raw

    def _new_record(self, body: Body, stage: str, meta: dict[str, Any] | None) -> CallRecord:
        rec = self._record(body["messages"], stage, meta, time.time())
        if self.budget is not None:
            self.budget.reserve()
        return rec

    def _failed(self, rec: CallRecord, exc: LLMError, start: float) -> None:
        rec.error, rec.latency_s = str(exc), time.perf_counter() - start
        rec.attempts = getattr(exc, "attempts", 1)
        self._log(rec)
        if self.budget is not None:
            self.budget.settle(0, 0.0)

    async def open_stream(self, body: Body, *, stage: str = "proxy",
                          meta: dict[str, Any] | None = None) -> AsyncIterator[Body]:
        """Open a streamed completion, retrying transient faults until the upstream answers; returns an
        async iterator of chat.completion.chunk objects (a usage-only chunk may come last). Faults after
        the stream started raise `LLMError` from the iterator. The call is logged when the stream ends,
        fails or is closed early."""
        if getattr(self.backend, "open_stream", None) is None:
            plain = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
            return replay_as_chunks(await self.complete(plain, stage=stage, meta=meta))
        rec = self._new_record(body, stage, {**(meta or {}), "stream": True})
        sem = self._sem()
        start = time.perf_counter()
        await sem.acquire()
        try:
            start = time.perf_counter()
            chunks, attempts = await self._retry(lambda: self.backend.open_stream(body, timeout=self.timeout_s),
                                                 check_choices=False)
        except BaseException as exc:
            sem.release()
            if isinstance(exc, LLMError):
                self._failed(rec, exc, start)
            raise
        rec.attempts = attempts
        return self._relay(chunks, rec, start, sem, body)

    async def _relay(self, chunks, rec: CallRecord, start: float, sem, body: Body) -> AsyncIterator[Body]:
        acc = StreamAccumulator()
        try:
            async for chunk in chunks:
                acc.add(chunk)
                yield chunk
            acc.done = True
        except Exception as exc:
            err = exc if isinstance(exc, LLMError) else self._classify(exc, self.timeout_s)
            rec.error = str(err)
            raise err from exc
        finally:
            sem.release()
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # the upstream connection is gone either way
                    pass
            rec.latency_s = time.perf_counter() - start
            self._settle_stream(rec, acc, body)

    def _settle_stream(self, rec: CallRecord, acc: "StreamAccumulator", body: Body) -> None:
        acc.fill(rec, body)
        if not acc.done and rec.error is None:
            rec.meta["closed_early"] = True
        cost = 0.0
        if not self.is_local and isinstance(self.backend, LiteLLMBackend):
            cost = estimate_cost(self.backend.model, rec.prompt_tokens, rec.completion_tokens) or 0.0
        rec.cost_usd = cost
        if self.budget is not None:
            self.budget.settle(rec.prompt_tokens + rec.completion_tokens, cost)
        self._log(rec)


class StreamAccumulator:
    """Collects what a stream said, for the call log: text and finish reason of choice 0, and usage."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.content_chunks = 0
        self.done = False

    def add(self, chunk: Body) -> None:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            text = (choice.get("delta") or {}).get("content")
            if text:
                self.parts.append(text)
                self.content_chunks += 1
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def fill(self, rec: CallRecord, body: Body) -> None:
        rec.response = "".join(self.parts)
        rec.finish_reason = self.finish_reason
        if self.usage:
            rec.prompt_tokens = int(self.usage.get("prompt_tokens") or 0)
            rec.completion_tokens = int(self.usage.get("completion_tokens") or 0)
        else:  # the upstream sent no usage: about 4 characters a token, one token per chunk
            rec.prompt_tokens = len(json.dumps(body.get("messages", []), ensure_ascii=False)) // 4
            rec.completion_tokens = self.content_chunks
            rec.meta["usage_estimated"] = True


def body_from_raw(raw: RawResponse) -> Body:
    """An OpenAI chat.completion object for a backend that only returns `RawResponse`."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": raw.model,
        "choices": [{"index": i, "message": {"role": "assistant", "content": c.text},
                     "finish_reason": c.finish_reason} for i, c in enumerate(raw.choices)],
        "usage": {"prompt_tokens": raw.prompt_tokens, "completion_tokens": raw.completion_tokens,
                  "total_tokens": raw.prompt_tokens + raw.completion_tokens},
    }


__all__ = ["PassthroughMixin", "StreamAccumulator", "body_from_raw", "merge_responses", "replay_as_chunks"]
