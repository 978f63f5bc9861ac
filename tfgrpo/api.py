"""Use a learned library from Python.

    from tfgrpo.api import completion, use_library
    resp = completion(model="openai/gpt-4.1-mini", messages=[...], library="gsm8k")

`completion` / `acompletion` take litellm's arguments plus the prior's (`library`, `version`, `mode`,
`k`, `token_cap`, `placement`, `db`) and return litellm's response. `use_library(...)` opens a library
once for many calls and works with any OpenAI client: `lib.apply(messages)` or `lib.wrap(client)`.
The prior is applied by `tfgrpo.prior.Prior`, the same render that training and evaluation use. The
store is opened read-only: nothing here writes to it."""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any, Literal

from tfgrpo.llm import litellm_helper
from tfgrpo_common.chat import CallLog, CallRecord


class Library:
    """An experience library opened for use, with the prior it was trained with (`mode`, `k`, `token_cap`,
    `placement` override it when given). `apply(messages)` returns the messages with the prior placed; `last_ids` are the experience ids injected by the latest call. Pass `store=` to share an
    open `ExperienceStore`; otherwise `db` (default `$TFGRPO_HOME/tfgrpo.duckdb`) is opened read-only
    and closed by `close()` / leaving the `with` block. With `call_log=`, calls made through
    `completion` / `acompletion` / `wrap` are recorded there with the injected ids."""

    def __init__(self, library: str, *, version: int | None = None, mode: Literal["all", "topk"] | None = None,
                 k: int | None = None, token_cap: int | None = None, placement: Literal["system", "user"] | None = None,
                 db: str | Path | None = None, store=None, call_log: CallLog | None = None) -> None:
        from tfgrpo.prior import Prior
        from experience_store import open_store

        self._own_store = store is None
        self.store = store if store is not None else open_store(Path(db) if db else None, read_only=True)
        try:
            self.store.require_library(library)
            self.prior = Prior.from_store(self.store, library, version, mode=mode, k=k, token_cap=token_cap,
                                          placement=placement)
        except BaseException:
            self.close()
            raise
        self.call_log = call_log
        self.last_ids: list[int] = []

    @property
    def name(self) -> str:
        return self.prior.library

    @property
    def version(self) -> int:
        return self.prior.version

    def apply_with_ids(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
        """(messages with the prior placed, injected experience ids); the input is not changed."""
        new, ids = self.prior.apply_with_ids(list(messages))
        self.last_ids = ids
        return new, ids

    def apply(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages with the prior placed (a copy)."""
        return self.apply_with_ids(messages)[0]

    def completion(self, model: str, messages: list[dict[str, Any]], **kwargs: Any):
        """`litellm.completion` with this library's prior applied."""
        msgs, ids = self.apply_with_ids(messages)
        start = time.perf_counter()
        resp = litellm_helper.completion(model, msgs, **kwargs)
        self.record(model, msgs, ids, resp, start)
        return resp

    async def acompletion(self, model: str, messages: list[dict[str, Any]], **kwargs: Any):
        """`litellm.acompletion` with this library's prior applied."""
        msgs, ids = self.apply_with_ids(messages)
        start = time.perf_counter()
        resp = await litellm_helper.acompletion(model, msgs, **kwargs)
        self.record(model, msgs, ids, resp, start)
        return resp

    def wrap(self, client):
        """An OpenAI client (sync or async) whose `chat.completions.create` applies this prior; the rest
        of the client is untouched."""
        return _Wrapped(client, self, "client")

    def record(self, model: str, messages: list[dict], ids: list[int], resp: Any, start: float) -> None:
        """Log one call to `call_log` (no-op without one); streamed responses are logged without text."""
        if self.call_log is None:
            return
        choices = getattr(resp, "choices", None) or []
        usage = getattr(resp, "usage", None)
        message = getattr(choices[0], "message", None) if choices else None
        rec = CallRecord(
            model=str(model), stage="api", request=messages, latency_s=time.perf_counter() - start,
            response=getattr(message, "content", None), finish_reason=getattr(choices[0], "finish_reason", None)
            if choices else None, prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            meta={"injected_ids": ids, "library": self.name, "version": self.version})
        try:
            self.call_log.record(rec)
        except Exception:  # the log never breaks a call
            pass

    def close(self) -> None:
        if self._own_store and getattr(self, "store", None) is not None:
            self.store.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Wrapped:
    """A view of an OpenAI client where `chat.completions.create/parse/stream` get the prior."""

    _NEXT = {"client": ("chat", "chat"), "chat": ("completions", "completions")}
    _CALLS = frozenset({"create", "parse", "stream"})

    def __init__(self, inner, lib: Library, level: str) -> None:
        self._inner, self._lib, self._level = inner, lib, level

    def __getattr__(self, name: str):
        attr = getattr(self._inner, name)
        nxt = self._NEXT.get(self._level)
        if nxt is not None and name == nxt[0]:
            return _Wrapped(attr, self._lib, nxt[1])
        if self._level == "completions" and name in self._CALLS:
            return self._call(attr)
        return attr

    def _call(self, fn):
        lib = self._lib

        def call(*args, messages, **kwargs):
            msgs, ids = lib.apply_with_ids(messages)
            start = time.perf_counter()
            result = fn(*args, messages=msgs, **kwargs)
            if inspect.isawaitable(result):
                return _after(result, lib, kwargs.get("model", ""), msgs, ids, start)
            lib.record(kwargs.get("model", ""), msgs, ids, result, start)
            return result

        return call


async def _after(pending, lib: Library, model: str, msgs: list[dict], ids: list[int], start: float):
    result = await pending
    lib.record(model, msgs, ids, result, start)
    return result


def use_library(library: str, **options: Any) -> Library:
    """Open `library` for use: `with use_library("gsm8k") as lib: client = lib.wrap(OpenAI())`.
    Options: version, mode ("all" | "topk"), k, token_cap, placement, db, store, call_log."""
    return Library(library, **options)


_PRIOR_KEYS = ("version", "mode", "k", "token_cap", "placement", "db", "store", "call_log")


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    prior = {key: kwargs.pop(key) for key in _PRIOR_KEYS if key in kwargs}
    return prior, kwargs


def completion(model: str, messages: list[dict[str, Any]], *, library: str | None = None, **kwargs: Any):
    """`litellm.completion(model, messages, ...)` with the prior of `library` applied (none when None).
    Prior options: version, mode, k, token_cap, placement, db, store, call_log; everything else goes
    to litellm. For many calls, open the library once with `use_library`."""
    prior, rest = _split(kwargs)
    if library is None:
        return litellm_helper.completion(model, messages, **rest)
    with Library(library, **prior) as lib:
        return lib.completion(model, messages, **rest)


async def acompletion(model: str, messages: list[dict[str, Any]], *, library: str | None = None, **kwargs: Any):
    """`litellm.acompletion` with the prior of `library` applied; same options as `completion`."""
    prior, rest = _split(kwargs)
    if library is None:
        return await litellm_helper.acompletion(model, messages, **rest)
    with Library(library, **prior) as lib:
        return await lib.acompletion(model, messages, **rest)


__all__ = ["Library", "acompletion", "completion", "use_library"]
