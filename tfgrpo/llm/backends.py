"""Transport backends behind the gateway. This module and `gateway.py` are the only importers of
openai/litellm. A backend sends ONE request and returns the raw choices; the gateway adds retries,
timeouts, concurrency limits, n-emulation, cost and logging."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@dataclass
class RawChoice:
    text: str
    finish_reason: str | None


@dataclass
class RawResponse:
    choices: list[RawChoice]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """Sends one chat request. Raises the transport's own exceptions (openai.* or litellm.*); the
    gateway classifies them. `native_n` says whether the backend honours `n` itself."""

    model: str
    native_n: bool

    async def send(
        self, messages: list[dict], *, temperature: float, max_tokens: int, n: int,
        seed: int | None, timeout: float, extra: dict[str, Any] | None = None, stage: str = "chat",
    ) -> RawResponse: ...

    async def aclose(self) -> None: ...


class OpenAICompatBackend:
    """Any OpenAI-compatible server (the embedded llama.cpp server, vLLM, Ollama, a proxy)."""

    def __init__(self, model: str, api_base: str, api_key: str | None = None, native_n: bool = False):
        import openai

        self.model = model
        self.native_n = native_n
        self.api_base = api_base.rstrip("/")
        self._client = openai.AsyncOpenAI(
            base_url=self.api_base, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "sk-local",
            max_retries=0,
        )

    async def send(self, messages, *, temperature, max_tokens, n, seed, timeout, extra=None, stage="chat"):
        kwargs: dict[str, Any] = dict(
            model=self.model, messages=messages, temperature=temperature, max_tokens=max_tokens,
            top_p=1.0 if temperature == 0 else 0.95, timeout=timeout,
        )
        if n > 1:
            kwargs["n"] = n
        if seed is not None:
            kwargs["seed"] = seed
        if extra:
            kwargs["extra_body"] = extra
        resp = await self._client.chat.completions.create(**kwargs)
        usage = resp.usage
        return RawResponse(
            choices=[RawChoice(c.message.content or "", c.finish_reason) for c in resp.choices],
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            model=resp.model or self.model,
        )

    async def aclose(self) -> None:
        await self._client.close()


class LiteLLMBackend:
    """Hosted providers by litellm model name (openai/gpt-4.1-mini, deepseek/deepseek-chat, ...)."""

    def __init__(self, model: str, api_base: str | None = None, api_key: str | None = None):
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        self.native_n = model.startswith(("openai/", "gpt-")) and api_base is None

    async def send(self, messages, *, temperature, max_tokens, n, seed, timeout, extra=None, stage="chat"):
        import litellm

        kwargs: dict[str, Any] = dict(
            model=self.model, messages=messages, temperature=temperature, max_tokens=max_tokens,
            timeout=timeout, num_retries=0, api_base=self.api_base, api_key=self.api_key,
        )
        if n > 1:
            kwargs["n"] = n
        if seed is not None:
            kwargs["seed"] = seed
        resp = await litellm.acompletion(**kwargs)
        try:
            cost = float(litellm.completion_cost(completion_response=resp) or 0.0)
        except Exception:  # unknown price: recorded as 0, visible as such in the log
            cost = 0.0
        usage = getattr(resp, "usage", None)
        return RawResponse(
            choices=[RawChoice(c.message.content or "", c.finish_reason) for c in resp.choices],
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            cost_usd=cost, model=getattr(resp, "model", self.model) or self.model,
        )

    async def aclose(self) -> None:
        return None


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for the given usage from litellm's price table; None when the model has no known price."""
    import litellm

    try:
        p, c = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return float(p + c)
    except Exception:
        return None
