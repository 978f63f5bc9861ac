"""Transport backends behind the gateway. This module and `gateway.py` are the only importers of
openai/litellm. A backend sends ONE request and returns the raw choices; the gateway adds retries,
timeouts, concurrency limits, n-emulation, cost and logging."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Protocol

from tfgrpo.llm.openai_shapes import passthrough_params

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")


def import_litellm():
    """litellm, quieted: no "Give Feedback / Get Help" or provider-list banners and no log
    lines of its own on the console (the gateway turns each failure into one `LLMError`, which is recorded
    in the call log). `LITELLM_LOG=DEBUG` in the environment keeps its logging, for debugging."""
    import litellm

    litellm.suppress_debug_info = True  # cheap: set on every use, in case other code turned it back on
    if not os.environ.get("LITELLM_LOG"):
        for name in _LITELLM_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    return litellm


@dataclass
class RawChoice:
    text: str
    finish_reason: str | None
    refusal: str | None = None  # the provider's `message.refusal` (content is then usually null)


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
    gateway classifies them. `native_n` says whether the backend honours `n` itself.

    Optional, for the proxy: `send_body(body, timeout=)` forwards a whole OpenAI request body and
    `open_stream(body, timeout=)` streams one; the gateway falls back to `send` where they are absent."""

    model: str
    native_n: bool

    async def send(
        self, messages: list[dict], *, temperature: float, max_tokens: int, n: int,
        seed: int | None, timeout: float, extra: dict[str, Any] | None = None, stage: str = "chat",
    ) -> RawResponse: ...

    async def aclose(self) -> None: ...


class OpenAICompatBackend:
    """Any OpenAI-compatible server (the embedded llama.cpp server, vLLM, Ollama, a proxy)."""

    #: `send` bounds the whole exchange by `timeout` (the HTTP client's own): the gateway adds no timer of its own
    enforces_timeout = True

    def __init__(self, model: str, api_base: str, api_key: str | None = None, native_n: bool = False):
        self.model = model
        self.native_n = native_n
        self.api_base = api_base.rstrip("/")
        self._api_key = api_key or os.environ.get("OPENAI_API_KEY") or "sk-local"
        self._http = None  # the pooled transport (llm/http_passthrough.py), made on first use

    async def send(self, messages, *, temperature, max_tokens, n, seed, timeout, extra=None, stage="chat"):
        """One chat completion over the pooled HTTP/1.1 client (`http1`; no SDK request transform per call: the hot
        path of training and evaluation); `extra` is merged into the body as the SDK's `extra_body` was."""
        payload: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": temperature,
                                   "max_tokens": max_tokens, "top_p": 1.0 if temperature == 0 else 0.95}
        if n > 1:
            payload["n"] = n
        if seed is not None:
            payload["seed"] = seed
        if extra:
            payload.update(extra)
        data = await self._passthrough().send(payload, timeout=timeout)
        res = response_from_body(data, self.model)
        res.extra = {}  # the body stays with the proxy's passthrough only
        return res

    # -- passthrough (the proxy): an OpenAI request body in, the upstream's JSON out ----------------
    def _passthrough(self):
        if self._http is None:
            from tfgrpo.llm.http_passthrough import PassthroughHTTP

            self._http = PassthroughHTTP(self.api_base, self._api_key)
        return self._http

    async def send_body(self, body: dict[str, Any], *, timeout: float) -> RawResponse:
        """Forward a chat-completions request body as it is (tools, stop, response_format...); the
        upstream's JSON response is kept whole in `extra["body"]`."""
        payload = {**passthrough_params(body), "model": self.model, "messages": body["messages"]}
        return response_from_body(await self._passthrough().send(payload, timeout=timeout), self.model)

    async def open_stream(self, body: dict[str, Any], *, timeout: float) -> AsyncIterator[dict[str, Any]]:
        """Open a streamed completion (HTTP errors raise here); returns an iterator of chunk dicts."""
        payload = {**passthrough_params(body), "model": self.model, "messages": body["messages"], "stream": True,
                   "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
        return await self._passthrough().open_stream(payload, timeout=timeout)

    def shed(self) -> Awaitable[None] | None:
        """Set the pooled connections aside (none of this backend's requests may be in flight; later requests
        open new ones); the awaitable that closes them, or None when there are none."""
        return None if self._http is None else self._http.shed()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


class LiteLLMBackend:
    """Hosted providers by litellm model name (openai/gpt-4.1-mini, deepseek/deepseek-chat, ...)."""

    def __init__(self, model: str, api_base: str | None = None, api_key: str | None = None):
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        self.native_n = model.startswith(("openai/", "gpt-")) and api_base is None

    async def send(self, messages, *, temperature, max_tokens, n, seed, timeout, extra=None, stage="chat"):
        litellm = import_litellm()

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
            choices=[RawChoice(c.message.content or "", c.finish_reason, getattr(c.message, "refusal", None))
                     for c in resp.choices],
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            cost_usd=cost, model=getattr(resp, "model", self.model) or self.model,
        )

    def _body_kwargs(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        return {**passthrough_params(body), "model": self.model, "messages": body["messages"],
                "timeout": timeout, "num_retries": 0, "api_base": self.api_base, "api_key": self.api_key}

    async def send_body(self, body: dict[str, Any], *, timeout: float) -> RawResponse:
        """Forward a chat-completions request body through litellm; the response JSON is in `extra["body"]`."""
        litellm = import_litellm()

        resp = await litellm.acompletion(**self._body_kwargs(body, timeout))
        try:
            cost = float(litellm.completion_cost(completion_response=resp) or 0.0)
        except Exception:  # unknown price: recorded as 0
            cost = 0.0
        out = response_from_body(resp.model_dump(mode="json", exclude_none=True), self.model)
        out.cost_usd = cost
        return out

    async def open_stream(self, body: dict[str, Any], *, timeout: float) -> AsyncIterator[dict[str, Any]]:
        """Open a streamed completion through litellm; returns an iterator of chunk dicts."""
        litellm = import_litellm()

        kwargs = self._body_kwargs(body, timeout)
        kwargs["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        stream = await litellm.acompletion(stream=True, **kwargs)

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            async for chunk in stream:
                yield chunk.model_dump(mode="json", exclude_none=True)

        return chunks()

    async def aclose(self) -> None:
        return None



def response_from_body(data: dict[str, Any], model: str) -> RawResponse:
    """A `RawResponse` view of an OpenAI chat-completion JSON body (kept whole in `extra["body"]`)."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise ValueError(f"upstream answered with something that is not a chat completion: {str(data)[:200]}")
    choices = [RawChoice((c.get("message") or {}).get("content") or "", c.get("finish_reason"),
                         (c.get("message") or {}).get("refusal")) for c in data["choices"]]
    usage = data.get("usage") or {}
    return RawResponse(choices=choices, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                       completion_tokens=int(usage.get("completion_tokens") or 0),
                       model=data.get("model") or model, extra={"body": data})

def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for the given usage from litellm's price table; None when the model has no known price."""
    litellm = import_litellm()

    try:
        p, c = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return float(p + c)
    except Exception:
        return None
