"""One `tfgrpo grpo` run: load the task's training items, record a run row (kind "grpo") in the
store, train with the weight backend, and close the row with steps, wall time, device and cost.

The store file is opened only around the two writes, never during training (DuckDB allows a single
writing process, and a training run can take hours)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from tasks.base import Example, Task
from tfgrpo.errors import ConfigError
from tfgrpo.grpo.backend import TrainOutcome, TrlBackend, WeightBackend
from tfgrpo.grpo.config import GrpoConfig
from tfgrpo.grpo.meta import write_meta

Progress = Callable[[str], None]


def training_items(task: Task, config: GrpoConfig) -> list[Example]:
    if config.split not in task.splits:
        raise ConfigError(f"task {task.name} has no {config.split!r} split (it has {', '.join(task.splits)}); "
                          "pass --split with one of those")
    items = task.examples(config.split)
    items = items[: config.limit] if config.limit else items
    if not items:
        raise ConfigError(f"task {task.name} has no items in split {config.split!r}")
    return items


def run_metrics(outcome: TrainOutcome) -> dict[str, Any]:
    """The metrics dict stored on the run row."""
    m = outcome.meta
    keep = ("reward", "reward_std", "loss", "train_loss", "completions/mean_length", "train_runtime")
    trl = {k: v for k, v in m.final_metrics.items() if k in keep or k.startswith("rewards/")}
    return {"checkpoint": str(outcome.checkpoint), "device": m.device, "device_name": m.device_name,
            "wall_s": round(m.wall_s, 2), "train_s": round(m.train_s, 2), "cpu_s": round(m.cpu_s, 2),
            "gpu_s": round(m.gpu_s, 2), "step_s": m.step_s, "completions": m.completions,
            "reward_mean": m.reward_stats.get("mean_reward"), "trl": trl}


def _open(db: Path | None):
    from experience_store import open_store

    return open_store(db)


def _start_row(db: Path | None, config: GrpoConfig) -> str:
    store = _open(db)
    try:
        return store.create_run(config.task, "grpo", config.model_dump(), config.model)
    finally:
        store.close()


def _finish_row(db: Path | None, run_id: str, **fields: Any) -> None:
    store = _open(db)
    try:
        store.update_run(run_id, finished_at=time.time(), **fields)
    finally:
        store.close()


def run_grpo(config: GrpoConfig, *, task: Task | None = None, db: Path | None = None, record: bool = True,
             backend: WeightBackend | None = None, progress: Progress = lambda s: None) -> TrainOutcome:
    """Train `config.task` with GRPO; returns the outcome. `record=False` skips the store row."""
    if task is None:
        from tasks.registry import get_task

        task = get_task(config.task, data_file=config.data_file, reward=config.reward)
    items = training_items(task, config)
    backend = backend or TrlBackend()
    backend.check(config, len(items))
    Path(config.out).mkdir(parents=True, exist_ok=True)
    run_id = _start_row(db, config) if record else None
    start = time.perf_counter()
    try:
        outcome = backend.train(task, items, config, progress=progress)
    except BaseException as exc:
        if run_id:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            _finish_row(db, run_id, status=status, error=f"{type(exc).__name__}: {exc}"[:2000],
                        metrics={"wall_s": round(time.perf_counter() - start, 2)})
        raise
    if run_id:
        outcome.meta.run_id = run_id
        write_meta(config.out, outcome.meta)
        _finish_row(db, run_id, status="completed", steps=outcome.meta.steps, metrics=run_metrics(outcome))
    return outcome
