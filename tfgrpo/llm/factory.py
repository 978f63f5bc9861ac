"""Build gateways from model names. Embedded servers are started once per GGUF and shared by every
gateway (policy and learner) in the process; `ModelPool.close()` stops them."""

from __future__ import annotations

import os

from tfgrpo.llm.budget import Budget
from tfgrpo.llm.config import ModelConfig
from tfgrpo.errors import ModelNotAvailableError
from tfgrpo.llm.backends import LiteLLMBackend, OpenAICompatBackend
from tfgrpo.llm.fetch import resolve_gguf
from tfgrpo.llm.gateway import Gateway, Slots
from tfgrpo.llm.local import LocalServer
from tfgrpo.llm.registry import LOCAL_MODELS, is_local
from tfgrpo.llm.scripted import ScriptedBackend
from tfgrpo_common.chat import CallLog


def check_model_name(model: str) -> None:
    """Refuse names that cannot work before anything starts."""
    if is_local(model) and model not in LOCAL_MODELS:
        raise ModelNotAvailableError(f"unknown local model {model!r}; valid: {', '.join(LOCAL_MODELS)}, "
                                     "or --gguf PATH, or a litellm name such as openai/gpt-4.1-mini")
    if not model.strip():
        raise ModelNotAvailableError("empty --model; use `local` or a litellm model name")


#: The slowest decode rate (tokens/s per request) an embedded server's timeout allows for: a 2,048-token
#: answer gets 60 + 1,024 s. Measured here: the 1.5B decodes 6-10 tokens/s per slot with 4 slots busy.
MIN_LOCAL_DECODE_TPS = 2.0


class ModelPool:
    """Owns the embedded servers of one process. `slots`: requests an embedded llama-server decodes at once
    (default `$TFGRPO_LLAMA_SLOTS`, else 4). Every gateway to one embedded server shares one limit of its
    slots, so the policy's and the learner's calls never wait inside the server with their clocks running."""

    def __init__(self, progress=lambda s: None, slots: int | None = None) -> None:
        self._servers: dict[str, LocalServer] = {}
        self._limits: dict[str, Slots] = {}
        self.progress = progress
        self.slots = slots

    def _limit(self, key: str, slots: int) -> Slots:
        if key not in self._limits:
            self._limits[key] = Slots(slots)
        return self._limits[key]

    def server_for(self, cfg: ModelConfig) -> LocalServer:
        path = resolve_gguf(cfg.model, cfg.gguf, progress=self.progress)
        key = str(path)
        if key not in self._servers:
            spec = LOCAL_MODELS.get(cfg.model)
            n_ctx = cfg.n_ctx or (spec.n_ctx if spec else 4096)
            self.progress(f"starting embedded llama.cpp server for {path.name}")
            server = LocalServer(path, n_ctx=n_ctx, alias=cfg.model, slots=self.slots).start()
            self.progress(f"embedded model served by {server.engine} with {server.slots} slot(s)")
            self._servers[key] = server
        return self._servers[key]

    def gateway(self, cfg: ModelConfig, *, call_log: CallLog | None = None, budget: Budget | None = None,
                run_id: str | None = None) -> Gateway:
        check_model_name(cfg.model)
        local, slots, shared = False, 2, None
        if cfg.model == "scripted":
            backend = ScriptedBackend()
            local = True
        elif is_local(cfg.model) or cfg.gguf:
            local = True
            base = os.environ.get("TFGRPO_LOCAL_API_BASE") if not cfg.gguf else None
            if not base:
                server = self.server_for(cfg)
                base, slots = server.api_base, max(slots, server.slots)
            backend = OpenAICompatBackend(cfg.model, base)
            shared = self._limit(base, slots)
        elif cfg.api_base:
            name = cfg.model.split("/", 1)[1] if cfg.model.startswith("openai/") else cfg.model
            backend = OpenAICompatBackend(name, cfg.api_base, cfg.api_key)
        else:
            backend = LiteLLMBackend(cfg.model, None, cfg.api_key)
        # an embedded server decodes `slots` requests at once (one on llama_cpp.server, where a second in
        # flight only queues): keep every slot busy, but no more than the configured concurrency
        conc = min(cfg.concurrency, slots) if local and cfg.model != "scripted" else cfg.concurrency
        embedded = shared is not None  # a timeout there is the box's decode speed, not a network fault
        scale = embedded and "timeout_s" not in cfg.model_fields_set
        return Gateway(backend, name=cfg.model, concurrency=conc, timeout_s=cfg.timeout_s,
                       max_attempts=cfg.max_attempts, call_log=call_log, budget=budget, run_id=run_id,
                       is_local=local, slots=shared, min_decode_tps=MIN_LOCAL_DECODE_TPS if scale else None,
                       retry_timeouts=not embedded)

    def close(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()

    def __enter__(self) -> "ModelPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
