"""Evaluate a named task end to end: load the task and its items, start (or reuse) the model, run the
evaluation, close the model's HTTP clients inside their event loop. Progress goes to `on_item`."""

from __future__ import annotations

from typing import Any, Callable

from tasks.registry import load_task
from tfgrpo.config import ModelConfig, TaskOptions
from tfgrpo.errors import ConfigError
from tfgrpo.evaluation.runner import EvalResult, run_eval
from tfgrpo.llm.factory import ModelPool
from tfgrpo_common.event_loop import run_hot


def evaluate_task(task_name: str, model_cfg: ModelConfig, *, k: int, split: str, limit: int | None, seed: int,
                  temperature: float, max_tokens: int, apply_prior=None, library: str | None = None,
                  version: int | None = None, pool: ModelPool | None = None, call_log=None,
                  task_options: TaskOptions | None = None, model=None,
                  on_start: Callable[[int], None] = lambda total: None,
                  on_item: Callable[[Any], None] = lambda item: None,
                  progress: Callable[[str], None] = lambda msg: None) -> EvalResult:
    """Run `task_name`'s first `limit` items of `split` through `model` (any ChatModel) or the gateway
    for `model_cfg`. `on_start(n_items)` is called once, `on_item(result)` after each item."""
    task = load_task(task_name, **(task_options or TaskOptions()).load_kwargs())
    examples = task.examples(split)
    if limit:
        examples = examples[:limit]
    if not examples:
        raise ConfigError(f"task {task_name} has no items in split {split!r}")
    own = pool is None
    pool = pool or ModelPool(progress=progress)
    try:
        chat_model = model or pool.gateway(model_cfg, call_log=call_log)
        on_start(len(examples))

        async def go() -> EvalResult:
            try:
                return await run_eval(chat_model, task, examples, k=k, seed=seed, temperature=temperature,
                                      max_tokens=max_tokens, apply_prior=apply_prior, on_item=on_item,
                                      library=library, version=version, split=split)
            finally:
                if hasattr(chat_model, "aclose"):
                    await chat_model.aclose()

        return run_hot(go())
    finally:
        if own:
            pool.close()
