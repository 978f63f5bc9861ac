"""Pre-flight: before a command's first real call, and before it writes anything, check that a model can
answer at all, so that a run that cannot reach its model stops at once with one line that names the fix
instead of "completing" with every call failed.

1. A hosted model (a litellm name, no --api-base, no api key in its config) needs its provider's key in
   the environment: `litellm.validate_environment(model)` names the variables. Missing: `ConfigError`.
2. One cheap probe call (max_tokens=1, at most 2 attempts, a short timeout) must succeed; otherwise
   `ModelNotAvailableError` with the gateway's classified reason (auth, unknown model, cannot connect...).

`scripted` skips both; local models (`local`, `local:*`, --gguf) and --api-base endpoints skip the key
check and get the probe only (a local probe starts the embedded server; pass the same `ModelPool` on to
the command so it is started once). The cause of a failed probe is logged once at DEBUG level on the
`tfgrpo.llm.preflight` logger; the console gets only the one line.
"""

from __future__ import annotations

import asyncio
import logging
import time

from tfgrpo.errors import ConfigError, LLMError, ModelNotAvailableError
from tfgrpo.llm.backends import import_litellm
from tfgrpo.llm.config import ModelConfig
from tfgrpo.llm.factory import ModelPool
from tfgrpo.llm.registry import is_local

log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 30.0  # hosted and --api-base models
LOCAL_PROBE_TIMEOUT_S = 120.0  # an embedded model's first answer includes loading it
PROBE_ATTEMPTS = 2
PROBE_MESSAGES = [{"role": "user", "content": "Reply with the single word: ok"}]


def preflight(cfg: ModelConfig, *, pool: ModelPool, role: str = "model") -> float | None:
    """Check `cfg` as described in the module docstring; return the probe's seconds (None: skipped).

    `role` names the model in the message ("policy model", "learner model")."""
    if cfg.model == "scripted":
        return None
    local = is_local(cfg.model) or bool(cfg.gguf)
    if not local and not cfg.api_base and not cfg.api_key:
        check_key(cfg.model, role)
    return probe(cfg, pool=pool, role=role, local=local)


def missing_keys(model: str) -> list[str]:
    """The environment variables `model`'s provider needs that are not set (base URLs do not count:
    providers such as ollama have a default one)."""
    try:
        env = import_litellm().validate_environment(model=model)
    except Exception as exc:  # an unknown provider: the probe will tell
        log.debug("validate_environment(%s) failed: %s", model, exc)
        return []
    if env.get("keys_in_environment"):
        return []
    return [k for k in env.get("missing_keys") or [] if not k.endswith("_API_BASE")]


def check_key(model: str, role: str = "model") -> None:
    """`ConfigError` naming the variable(s) when `model`'s provider key is not in the environment."""
    keys = missing_keys(model)
    if keys:
        need = keys[0] if len(keys) == 1 else " or ".join(keys)
        raise ConfigError(f"{role} {model} needs {need} in the environment, which is not set: "
                          f"`export {keys[0]}=...`, or use a local model (--model local) or an "
                          "OpenAI-compatible server (--api-base URL)")


def probe(cfg: ModelConfig, *, pool: ModelPool, role: str = "model", local: bool = False) -> float:
    """One max_tokens=1 call through the gateway (not logged, not budgeted); `ModelNotAvailableError`
    with the classified reason when it fails. Returns its wall seconds."""
    limit = LOCAL_PROBE_TIMEOUT_S if local else PROBE_TIMEOUT_S
    probe_cfg = cfg.model_copy(update={"timeout_s": min(cfg.timeout_s, limit),
                                       "max_attempts": min(cfg.max_attempts, PROBE_ATTEMPTS)})
    start = time.perf_counter()
    gateway = pool.gateway(probe_cfg)
    gateway.backoff_max_s = 1.0

    async def call() -> None:
        try:
            await gateway.chat(PROBE_MESSAGES, temperature=0.0, max_tokens=1, stage="preflight")
        finally:
            await gateway.aclose()

    try:
        asyncio.run(call())
    except LLMError as exc:
        log.debug("pre-flight probe of %s failed", cfg.model, exc_info=exc)
        where = f" at {cfg.api_base}" if cfg.api_base else ""
        reason = " ".join(str(exc).split())
        raise ModelNotAvailableError(f"{role} {cfg.model}{where} did not answer a 1-token test call, so "
                                     f"nothing was started: {reason}") from None
    return time.perf_counter() - start
