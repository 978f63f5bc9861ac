"""`tfgrpo serve`: an OpenAI-compatible HTTP proxy that applies a learned library's prior.

Routes: POST /v1/chat/completions (streaming and not), GET /v1/models, GET /health (open without a key:
status, the serve run's id, and the call log's counts `logged` / `pending` / `lost`, see
`tfgrpo.serve.call_log`). Each chat request gets the prior of the configured library (or the one its
X-TFGRPO-* headers pick) with the same selection and placement that training and evaluation use
(`tfgrpo.serve.priors`), then goes through the gateway (retries, timeouts, call log) to the upstream
model. Every forwarded call is logged with the injected ids. The proxy reads the library and writes only
the call log; it never changes experiences."""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tfgrpo.errors import LLMError
from tfgrpo.serve.config import H_INJECTED, PriorChoice, ProxyConfig, RequestError, prior_choice
from tfgrpo.serve.errors import error_body, install_handlers, upstream_status
from tfgrpo.serve.priors import PriorCache, ReadOnlyLibrary
from tfgrpo.serve.guard import Guard


@dataclass
class ProxyState:
    gateway: Any
    priors: PriorCache | None
    cfg: ProxyConfig
    started: float
    call_log: Any = None  # has `status()` when the proxy owns its call log
    run_id: str | None = None


MAX_N = 128  # the OpenAI API's own limit; each extra choice is one more upstream call


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RequestError(400, "request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise RequestError(400, "request body must be a JSON object", code="invalid_json")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and "role" in m for m in msgs):
        raise RequestError(400, "`messages` must be a non-empty list of {role, content} objects",
                           code="invalid_messages", param="messages")
    n = body.get("n", 1)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N):
        raise RequestError(400, f"`n` must be an integer from 1 to {MAX_N}", code="invalid_n", param="n")
    so = body.get("stream_options")
    if so is not None and not isinstance(so, dict):
        raise RequestError(400, "`stream_options` must be an object", code="invalid_stream_options",
                           param="stream_options")
    return body


async def _apply_prior(state: ProxyState, request: Request, messages: list[dict]) -> tuple[list, list[int], dict]:
    choice = prior_choice(request.headers, state.cfg)
    if choice.library is not None and state.priors is None:
        raise RequestError(400, "this proxy was started without a store; no library can be applied",
                           code="no_store")
    prior, new, ids = (None, messages, []) if state.priors is None else await state.priors.apply(choice, messages)
    if prior is None:
        return messages, [], {"library": None, "version": None, "injected_ids": []}
    info = {"library": prior.library, "version": prior.version, "mode": prior.mode, "injected_ids": ids}
    return new, ids, info


def _headers(info: dict) -> dict[str, str]:
    if info["library"] is None:
        return {H_INJECTED: "", "x-tfgrpo-library": "none"}
    return {H_INJECTED: ",".join(map(str, info["injected_ids"])), "x-tfgrpo-library": info["library"],
            "x-tfgrpo-version": str(info["version"])}


def _sse(data: dict) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


async def sse_events(chunks: AsyncIterator[dict], *, include_usage: bool) -> AsyncIterator[bytes]:
    """Server-sent events: one `data: {chunk}` per chunk, then `data: [DONE]`. A fault after the
    stream started is sent as an OpenAI-style error event (the openai SDK raises it)."""
    try:
        async for chunk in chunks:
            if not chunk.get("choices") and not include_usage:
                continue  # the usage-only chunk the client did not ask for
            yield _sse(chunk)
    except LLMError as exc:
        status, code = upstream_status(exc)
        yield _sse(error_body(f"upstream model error: {exc}", code=code) | {"status": status})
        return
    yield b"data: [DONE]\n\n"


def create_app(gateway, store, cfg: ProxyConfig, *, call_log=None, run_id: str | None = None) -> FastAPI:
    """The proxy as an ASGI app (wrapped by `Guard`). `store` may be None for a proxy with no prior.
    `call_log`, when it has `status()`, and `run_id` are reported by /health."""
    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        aclose = getattr(gateway, "aclose", None)
        if aclose is not None:  # the upstream connections live in the server's event loop
            await aclose()

    app = FastAPI(title="tfgrpo proxy", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    priors = PriorCache(ReadOnlyLibrary(store), cfg) if store is not None else None
    state = ProxyState(gateway, priors, cfg, time.time(), call_log, run_id)
    app.state.proxy = state
    install_handlers(app)

    @app.get("/health")
    async def health() -> dict:
        out = {"status": "ok", "model": cfg.served_model, "library": cfg.library, "run_id": state.run_id}
        status = getattr(state.call_log, "status", None)
        if status is not None:
            out["calls"] = status()
        return out

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": cfg.served_model, "object": "model",
                                            "created": int(state.started), "owned_by": "tfgrpo"}]}

    async def chat_completions(request: Request):
        body = _parse(await request.body())
        messages, _, info = await _apply_prior(state, request, body["messages"])
        meta = {**info, "requested_model": body.get("model")}
        forward = {**body, "messages": messages}
        headers = _headers(info)
        if body.get("stream"):
            chunks = await gateway.open_stream(forward, stage="proxy", meta=meta)
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(sse_events(chunks, include_usage=usage), media_type="text/event-stream",
                                     headers={**headers, "cache-control": "no-cache"})
        data = await gateway.complete(forward, stage="proxy", meta=meta)
        return JSONResponse(data, headers=headers)

    # a plain route: the body is parsed here, so FastAPI's per-request dependency solving (query string,
    # headers, body) would be work for nothing on the proxy's hottest path
    app.router.add_route("/v1/chat/completions", chat_completions, methods=["POST"])

    return app


def warm_up(app: FastAPI) -> None:
    """Build the default prior now (token counter, selection, embedder for topk) rather than on the
    first request."""
    state: ProxyState = app.state.proxy
    cfg = state.cfg
    if state.priors is not None and cfg.library is not None:
        prior = state.priors.get(PriorChoice(cfg.library, cfg.version, cfg.mode, cfg.k))
        prior.select([{"role": "user", "content": "warm-up"}])


def guarded_app(gateway, store, cfg: ProxyConfig, *, call_log=None, run_id: str | None = None):
    """`create_app`, warmed up, behind the auth and body-size guard: what `tfgrpo serve` runs."""
    app = create_app(gateway, store, cfg, call_log=call_log, run_id=run_id)
    warm_up(app)
    key = cfg.api_key.get_secret_value() if cfg.api_key is not None else None
    return Guard(app, api_key=key, max_body_bytes=cfg.max_body_bytes)
