"""Classify transport exceptions into retryable / permanent `LLMError`s with a fix in the message."""

from __future__ import annotations

import asyncio
import random

import httpx

from tfgrpo.errors import LLMError

_CONTEXT_HINTS = ("context length", "context_length", "maximum context", "too many tokens", "exceed context")
_AUTH_HINTS = ("missing credentials", "api_key client option must be set", "incorrect api key", "invalid api key")


def _status(exc: BaseException) -> int | None:
    for attr in ("status_code", "status"):
        val = getattr(exc, attr, None)
        if isinstance(val, int):
            return val
    resp = getattr(exc, "response", None)
    return getattr(resp, "status_code", None) if resp is not None else None


def classify(exc: BaseException, model: str, timeout_s: float, *, retry_timeouts: bool = True) -> LLMError:
    """Map any transport exception to an `LLMError` whose `retryable` flag drives the retry policy.
    `retry_timeouts=False` (an embedded server): a timeout is final, since the same request would take as
    long again."""
    if isinstance(exc, (asyncio.TimeoutError, httpx.TimeoutException)) or "Timeout" in type(exc).__name__:
        if retry_timeouts:
            err = LLMError(f"{model}: no answer within {timeout_s:.0f}s (raise --timeout if the model is slow)",
                           retryable=True)
        else:
            err = LLMError(f"{model}: no answer within {timeout_s:.0f}s; not retried, since the embedded server "
                           "would decode the same request again. Lower --max-tokens, or give the server fewer "
                           "requests at once (TFGRPO_LLAMA_SLOTS)")
        err.unreachable = True  # type: ignore[attr-defined]
    else:
        status = _status(exc)
        text = str(exc)[:300]
        low = text.lower()
        name = type(exc).__name__
        if status in (401, 403) or "Authentication" in name or "PermissionDenied" in name or \
                any(h in low for h in _AUTH_HINTS):
            status = status if status in (401, 403) else 401  # a missing key: fatal, like a 401
            err = LLMError(f"{model}: authentication failed ({status}). Set the provider's API key "
                           "(e.g. OPENAI_API_KEY) or pass --api-key.", status=status)
        elif any(h in low for h in _CONTEXT_HINTS) or "ContextWindow" in name:
            err = LLMError(f"{model}: the prompt does not fit the context window. Lower --max-tokens, "
                           "use fewer/shorter experiences (--token-cap) or a model with a longer context.",
                           status=status)
        elif status == 404 or "NotFound" in name:
            err = LLMError(f"{model}: model or endpoint not found ({text}). Check --model / --api-base.",
                           status=status)
        elif status is None and ("Connection" in name or isinstance(exc, (httpx.TransportError, OSError))):
            err = LLMError(f"{model}: cannot connect ({text}). Is the server at --api-base running?",
                           retryable=True)
            err.unreachable = True  # type: ignore[attr-defined]
        elif "connection error" in low:  # litellm reports a failed connection as a 500
            err = LLMError(f"{model}: cannot connect ({text}). Check the network, or the provider's "
                           "status.", status=status, retryable=True)
            err.unreachable = True  # type: ignore[attr-defined]
        elif status in (408, 409, 425, 429) or (status is not None and status >= 500):
            err = LLMError(f"{model}: transient error {status}: {text}", status=status, retryable=True)
        elif status is None and ("RemoteProtocol" in name or "APIError" in name):
            err = LLMError(f"{model}: broken response ({text})", retryable=True)
        else:
            err = LLMError(f"{model}: request rejected ({status}): {text}", status=status)
    err.retry_after = _retry_after(exc)  # type: ignore[attr-defined]
    return err


def _retry_after(exc: BaseException) -> float | None:
    resp = getattr(exc, "response", None)
    headers = getattr(resp, "headers", None)
    if not headers:
        return None
    val = headers.get("retry-after")
    try:
        return max(0.0, float(val)) if val is not None else None
    except ValueError:
        return None


def retry_wait(max_s: float):
    """tenacity wait: honour Retry-After when the server sent one, else exponential backoff + jitter."""

    def wait(retry_state) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        after = getattr(exc, "retry_after", None)
        if after is not None:
            return min(after, max_s)
        base = min(max_s, 0.5 * (2 ** (retry_state.attempt_number - 1)))
        return base * (0.5 + random.random() / 2)

    return wait
