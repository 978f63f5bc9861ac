"""What every stage of a step reads: the run's config, task and questions, the two models, the store, the
memo, the gate's slice; and the small helpers they share (stage messages, seeds, refusal records)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from tasks.base import Example, Task
from tfgrpo.config import TrainConfig
from tfgrpo.loop.memo import Memo
from tfgrpo_common.chat import ChatModel


@dataclass
class StepContext:
    cfg: TrainConfig
    task: Task
    examples: dict[str, Example]
    policy: ChatModel
    learner: ChatModel
    store: Any
    memo: Memo
    run_id: str
    on_stage: Callable[[str, int, str], None] = lambda stage, step, msg: None
    step_stats: list[dict[str, Any]] = field(default_factory=list)
    call_log: Any = None
    gate_examples: list[Example] = field(default_factory=list)
    on_step: Callable[[dict[str, Any]], None] = lambda stat: None  # after a step is committed (tracking)

    def flush(self) -> None:
        """Write buffered call records (before rollouts are stored, and at every stage boundary)."""
        if self.call_log is not None and hasattr(self.call_log, "flush"):
            self.call_log.flush()

    def stage(self, name: str, step: int, msg: str) -> None:
        self.flush()
        self.on_stage(name, step, msg)

    def reject(self, step: int) -> Callable[[str, str, str], None]:
        return lambda stage, reason, raw: self.store.record_rejection(self.run_id, step, stage, reason, raw)

    def seed(self, step: int, salt: int) -> int:
        return (self.cfg.seed * 7919 + step * 104_729 + salt) % 2_000_000_000

    def reference(self, qid: str) -> str | None:
        return self.examples[qid].answer if self.cfg.ground_truth else None
