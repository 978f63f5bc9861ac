"""The one LLM gateway: async chat with a global concurrency limit, per-call timeout, retries with
backoff on transient faults (tenacity), no retry on permanent ones, n-emulation, usage + USD per call,
`finish_reason` kept, every call recorded in the call log, hard budgets.

An embedded llama.cpp server is not a remote API: its gateways (policy and learner) share one limit of
its slots (`Slots`), so a call's clock runs only while a slot decodes it, not while it waits behind the
process's other calls; its timeout grows with the call's `max_tokens` (`min_decode_tps`); and a timeout is
not retried, since the same request on the same server would take as long again."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any, Awaitable, Callable

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from tfgrpo_common.event_loop import gather_or_cancel
from tfgrpo.llm.budget import Budget
from tfgrpo.errors import LLMError
from tfgrpo.llm.backends import Backend, RawResponse
from tfgrpo.llm.errors import classify, retry_wait
from tfgrpo.llm.passthrough import PassthroughMixin
from tfgrpo_common.chat import CallLog, CallRecord, Completion, Message


#: Seconds allowed for an embedded server's prompt and queue, on top of `max_tokens / min_decode_tps`.
PROMPT_ALLOWANCE_S = 60.0


class Slots:
    """At most `n` calls in flight to one server, shared by every gateway that calls it (one semaphore
    per event loop: a semaphore belongs to the loop it was first awaited on)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._sems: dict[int, asyncio.Semaphore] = {}

    def sem(self) -> asyncio.Semaphore:
        loop_id = id(asyncio.get_running_loop())
        sem = self._sems.get(loop_id)
        if sem is None:
            sem = self._sems[loop_id] = asyncio.Semaphore(self.n)
        return sem


class _Both:
    """Two semaphores taken in a fixed order (the gateway's own, then the server's shared one)."""

    def __init__(self, first: asyncio.Semaphore, second: asyncio.Semaphore) -> None:
        self.first, self.second = first, second

    async def acquire(self) -> None:
        await self.first.acquire()
        try:
            await self.second.acquire()
        except BaseException:
            self.first.release()
            raise

    def release(self) -> None:
        self.second.release()
        self.first.release()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc) -> None:
        self.release()


class Gateway(PassthroughMixin):
    """Implements the `ChatModel` protocol on top of a `Backend`; `complete` / `open_stream` (from
    `PassthroughMixin`) forward whole OpenAI request bodies for the proxy."""

    def __init__(
        self, backend: Backend, *, name: str | None = None, concurrency: int = 8, timeout_s: float = 300.0,
        max_attempts: int = 4, backoff_max_s: float = 30.0, call_log: CallLog | None = None,
        budget: Budget | None = None, run_id: str | None = None, is_local: bool = False,
        slots: Slots | None = None, min_decode_tps: float | None = None, retry_timeouts: bool = True,
    ) -> None:
        self.backend = backend
        self.name = name or backend.model
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_max_s = backoff_max_s
        self.call_log = call_log
        self.budget = budget
        self.run_id = run_id
        self.is_local = is_local
        self.min_decode_tps = min_decode_tps
        self.retry_timeouts = retry_timeouts
        self.slots = slots
        # a backend whose `send` enforces `timeout` over the whole exchange (connection, request, answer) needs no
        # backstop of the gateway's own (a timer per call)
        self._own_timeout = bool(getattr(backend, "enforces_timeout", False))
        own = Slots(concurrency)
        if slots is None:
            self._limit: Callable[[], asyncio.Semaphore | _Both] = own.sem
        elif slots.n <= concurrency:
            self._limit = slots.sem
        else:  # this gateway may use fewer than the server's slots: both limits hold
            self._limit = lambda: _Both(own.sem(), slots.sem())

    def _sem(self) -> asyncio.Semaphore | _Both:
        return self._limit()

    def call_timeout(self, max_tokens: int | None) -> float:
        """The limit for one call: `timeout_s`, or for an embedded server (`min_decode_tps` set) at least
        long enough to decode `max_tokens` at that rate after the prompt."""
        if self.min_decode_tps is None or not max_tokens:
            return self.timeout_s
        return max(self.timeout_s, PROMPT_ALLOWANCE_S + max_tokens / self.min_decode_tps)

    async def chat(
        self, messages: list[Message], *, temperature: float = 0.7, max_tokens: int = 512, n: int = 1,
        stage: str = "chat", seed: int | None = None, meta: dict[str, Any] | None = None,
    ) -> list[Completion]:
        """Return exactly `n` completions (see `ChatModel`)."""
        if n == 1:  # the usual call: one request, no task of its own (a gather per call costs the loop)
            return (await self._one(messages, temperature, max_tokens, 1, stage, seed, meta))[:1]
        return await self._many(messages, temperature, max_tokens, n, stage, seed, meta)

    async def _many(self, messages, temperature, max_tokens, n, stage, seed, meta) -> list[Completion]:
        """`n` != 1: one request asking for `n` where the backend honours it, separate requests for the rest."""
        if n < 1:
            raise LLMError("n must be >= 1")
        out = await self._one(messages, temperature, max_tokens, n, stage, seed, meta) if self.backend.native_n else []
        if len(out) < n:
            seeds = [None if seed is None else seed + i for i in range(len(out), n)]
            parts = await gather_or_cancel(*[
                self._one(messages, temperature, max_tokens, 1, stage, s, meta) for s in seeds])
            out.extend(c for part in parts for c in part)
        return out[:n]

    async def _one(self, messages, temperature, max_tokens, n, stage, seed, meta) -> list[Completion]:
        """One request. Its call record is made once the answer (or the failure) is in, not before the request
        leaves: in a burst of a thousand requests, work done before each one delays all the later ones."""
        if self.budget is not None:
            self.budget.reserve()  # raises BudgetExceeded: the run stops cleanly between calls
        ts, start = time.time(), time.perf_counter()
        timeout = self.call_timeout(max_tokens)
        send = partial(self.backend.send, messages, temperature=temperature, max_tokens=max_tokens, n=n, seed=seed,
                       timeout=timeout, stage=stage)
        try:
            async with self._sem():
                start = time.perf_counter()
                raw, attempts = await self._retry(send, timeout=timeout)
        except LLMError as exc:
            self._failed(self._record(messages, stage, meta, ts), exc, start)
            raise
        rec = self._record(messages, stage, meta, ts)
        rec.latency_s = time.perf_counter() - start
        rec.attempts = attempts
        return self._finish(rec, raw)

    def _record(self, messages, stage: str, meta: dict[str, Any] | None, ts: float) -> CallRecord:
        return CallRecord(model=self.name, stage=stage, request=messages, run_id=self.run_id, meta=dict(meta or {}),
                          ts=ts)

    def _finish(self, rec: CallRecord, raw: RawResponse) -> list[Completion]:
        cost = 0.0 if self.is_local else raw.cost_usd
        rec.prompt_tokens, rec.completion_tokens, rec.cost_usd = raw.prompt_tokens, raw.completion_tokens, cost
        rec.response = raw.choices[0].text if len(raw.choices) == 1 else None
        if len(raw.choices) > 1:
            rec.meta["responses"] = [c.text for c in raw.choices]
        rec.finish_reason = raw.choices[0].finish_reason if raw.choices else None
        refusals = [c.refusal for c in raw.choices if c.refusal]
        if refusals:  # a refusal with null content must still show in the call log
            rec.meta["refusal"] = refusals[0] if len(refusals) == 1 else refusals
        if self.budget is not None:
            self.budget.settle(raw.prompt_tokens + raw.completion_tokens, cost)
        self._log(rec)
        k = max(1, len(raw.choices))
        return [
            Completion(
                text=c.text, finish_reason=c.finish_reason, prompt_tokens=raw.prompt_tokens,
                completion_tokens=raw.completion_tokens // k, cost_usd=cost / k, model=raw.model or self.name,
                latency_s=rec.latency_s, call_id=rec.id,
            )
            for c in raw.choices
        ]

    def _classify(self, exc: BaseException, timeout: float) -> LLMError:
        return classify(exc, self.name, timeout, retry_timeouts=self.retry_timeouts)

    async def _attempt(self, send: Callable[[], Awaitable[Any]], check_choices: bool, timeout: float) -> Any:
        """One attempt; every fault comes out as an `LLMError` (retryable or not)."""
        try:
            if self._own_timeout:  # the transport's total timeout covers the whole exchange
                raw = await send()
            else:
                async with asyncio.timeout(timeout + 5):  # a backstop above the transport's own timeout
                    raw = await send()
        except (asyncio.TimeoutError, httpx.TimeoutException) as exc:
            raise self._classify(exc, timeout) from exc
        except LLMError:
            raise
        except Exception as exc:  # transport errors are classified, never leaked raw
            raise self._classify(exc, timeout) from exc
        if check_choices and not raw.choices:
            raise LLMError(f"{self.name} returned no choices", retryable=True)
        return raw

    async def _retry(self, send: Callable[[], Awaitable[Any]], *, check_choices: bool = True,
                     timeout: float | None = None) -> tuple[Any, int]:
        """Await `send()` with the retry policy; returns (result, attempts). Faults become `LLMError`.

        The first attempt runs on its own: most calls succeed at once, and tenacity's machinery costs
        about 0.1 ms a call. A retryable failure enters tenacity as its first attempt, so waits (Retry-After,
        backoff) and the attempt count are the policy's own."""
        timeout = self.timeout_s if timeout is None else timeout
        try:
            return await self._attempt(send, check_choices, timeout), 1
        except LLMError as exc:
            first = exc
        attempts = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=retry_wait(self.backoff_max_s),
            retry=retry_if_exception(lambda e: isinstance(e, LLMError) and e.retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    if attempts == 1:
                        raise first
                    return await self._attempt(send, check_choices, timeout), attempts
        except LLMError as exc:
            exc.attempts = attempts  # type: ignore[attr-defined]
            if exc.retryable:
                final = LLMError(f"{exc} (gave up after {attempts} attempts)", status=exc.status)
                final.attempts = attempts  # type: ignore[attr-defined]
                final.unreachable = getattr(exc, "unreachable", False)  # type: ignore[attr-defined]
                raise final from exc
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _log(self, rec: CallRecord) -> None:
        if self.call_log is not None:
            try:
                self.call_log.record(rec)
            except Exception:  # the log must never break a run
                pass

    def shed(self) -> Awaitable[None] | None:
        """Set the transport's pooled connections aside, where it pools them (none of this gateway's calls may be
        in flight; later calls open new ones), and return the awaitable that closes them (None: nothing to close).
        A run's last step does, while it waits for consolidation."""
        shed = getattr(self.backend, "shed", None)
        return None if shed is None else shed()

    async def aclose(self) -> None:
        await self.backend.aclose()
