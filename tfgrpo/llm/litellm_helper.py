"""litellm-shaped completion calls for the Python API (`tfgrpo.api.completion` / `acompletion`).

`local`, `local:qwen0.5b` and `local:smollm2` go to the embedded llama.cpp server (`TFGRPO_LOCAL_API_BASE`
when it points at a running one, else started once per process and stopped at exit); any other model
name goes to litellm as it is (`openai/gpt-4.1-mini`, `deepseek/deepseek-chat`, `openai/NAME` with
`api_base=` for vLLM / llama.cpp / Ollama)."""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_pool = None
_pool_lock = threading.Lock()


def _local_api_base(model: str) -> str:
    base = os.environ.get("TFGRPO_LOCAL_API_BASE")
    if base:
        return base
    global _pool
    from tfgrpo.llm.config import ModelConfig
    from tfgrpo.llm.factory import ModelPool

    with _pool_lock:
        if _pool is None:
            _pool = ModelPool()
            atexit.register(_pool.close)
        return _pool.server_for(ModelConfig(model=model)).api_base


def route(model: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The litellm model name and arguments for `model` (embedded names become `openai/<name>`)."""
    from tfgrpo.llm.factory import check_model_name
    from tfgrpo.llm.registry import is_local

    if not is_local(model):
        return model, kwargs
    check_model_name(model)
    base = kwargs.get("api_base") or _local_api_base(model)
    return f"openai/{model}", {**kwargs, "api_base": base, "api_key": kwargs.get("api_key") or "sk-local"}


def completion(model: str, messages: list[dict], **kwargs: Any):
    """`litellm.completion` with embedded-model routing."""
    import litellm

    name, kw = route(model, kwargs)
    return litellm.completion(model=name, messages=messages, **kw)


async def acompletion(model: str, messages: list[dict], **kwargs: Any):
    """`litellm.acompletion` with embedded-model routing."""
    import litellm

    name, kw = route(model, kwargs)
    return await litellm.acompletion(model=name, messages=messages, **kw)
