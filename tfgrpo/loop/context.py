"""What every stage of a step reads: the run's config, task and questions, the two models, the store, the
memo, the gate's slice; and the small helpers they share (stage messages, seeds, refusal records)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from tasks.base import Example, Task
from tfgrpo.config import TrainConfig
from tfgrpo.loop.memo import Memo
from tfgrpo_common.chat import ChatModel
from tfgrpo_common.errors import StoreError

FLUSH_WAIT_S = 300.0


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
    # the run row's metrics as this process last wrote them (None: not yet, read them from the store); the
    # trainer holds the library's lease, so no other process writes them meanwhile
    metrics: dict[str, Any] | None = None
    # (step, the version its ops were applied as, or None): read while the learner consolidates (`read_ahead`)
    applied_as: tuple[int, int | None] | None = None
    # (version, its live experiences) as the step's rollouts read them (`live_experiences` reuses them)
    library_read: tuple[int, list] | None = None
    # a stage's work begun ahead by the node before it (`stages.Consolidation`), taken by its own node
    ahead: Any = None
    # a run this process created: nothing of it was checkpointed or stored before (no state or rollouts to read)
    new_run: bool = False
    # this step's rollouts and summaries, kept here so the checkpointed state holds ids only
    _rows: tuple[int, dict[str, dict[str, Any]]] = field(default_factory=lambda: (-1, {}))
    _summaries: tuple[int, dict[str, str]] = field(default_factory=lambda: (-1, {}))

    def keep_rollouts(self, step: int, rows: list[dict[str, Any]]) -> None:
        if self._rows[0] != step:
            self._rows = (step, {})
        self._rows[1].update((r["id"], r) for r in rows)

    def rollouts(self, state: dict, qid: str) -> list[dict[str, Any]]:
        """The rollouts of one question of this step, in the order the state lists their ids. The rows live
        in the store: a resumed process reads them once per step. (A checkpoint written before the state held
        ids holds the rows themselves; they are used as they are.)"""
        step, ids = state["step"], state["rollouts"][qid]
        if self._rows[0] != step or any(isinstance(i, str) and i not in self._rows[1] for i in ids):
            self.keep_rollouts(step, [r.model_dump() for r in self.store.rollouts(self.run_id, step)])
        return [self._rows[1][i] if isinstance(i, str) else i for i in ids]

    def all_rollouts(self, state: dict) -> dict[str, list[dict[str, Any]]]:
        return {qid: self.rollouts(state, qid) for qid in state["rollouts"]}

    def read_ahead(self, step: int) -> None:
        """What committing `step` reads before it writes, read while the learner consolidates (off the step's
        critical path): the version the step's ops were applied as (None: not yet) and the run's metrics. Only this
        process applies the run's steps and writes its row (it holds the library's lease), so neither changes
        before the commit."""
        try:
            self.applied_as = (step, self.store.step_version(self.cfg.library, self.run_id, step))
            if self.metrics is None:
                self.metrics = self.store.run_metrics(self.run_id)
        except StoreError:  # the commit reads them itself (and reports the store's trouble there)
            self.applied_as = None

    def live_experiences(self, version: int | None) -> list:
        """The library's live experiences: those the step's rollouts read when `version` is still the current one
        (no second read), else read now."""
        known, lib = self.library_read, self.cfg.library
        if known is not None and version is not None and known[0] == version \
                and self.store.current_version(lib) == version:
            return known[1]
        return self.store.experiences(lib)

    def take_ahead(self, step: int) -> Any:
        """The work begun ahead for `step` (None: none), handed over once."""
        ahead, self.ahead = self.ahead, None
        if ahead is not None and ahead.step != step:
            ahead.answer.cancel()
            return None
        return ahead

    async def drop_ahead(self) -> None:
        """Cancel work begun ahead that no node took (the run stopped first) and wait for it to end."""
        ahead, self.ahead = self.ahead, None
        if ahead is not None:
            ahead.answer.cancel()
            await asyncio.gather(ahead.answer, return_exceptions=True)

    def step_version(self, step: int) -> int | None:
        """The version `step`'s ops were applied as (None: not yet), as `read_ahead` read it or from the store."""
        ahead, self.applied_as = self.applied_as, None
        if ahead is not None and ahead[0] == step:
            return ahead[1]
        return self.store.step_version(self.cfg.library, self.run_id, step)

    def summary_key(self, step: int, rollout_id: str) -> str:
        return f"{self.run_id}:{step}:sum:{rollout_id}"

    def keep_summaries(self, step: int, texts: dict[str, str]) -> None:
        self._summaries = (step, dict(texts))

    def summaries(self, state: dict) -> dict[str, str]:
        """The step's summaries by rollout id: the state lists the ids, the memo holds the texts."""
        step, ids = state["step"], state.get("summaries") or []
        if isinstance(ids, dict):  # a checkpoint from before the state held ids
            return ids
        if self._summaries[0] != step or any(i not in self._summaries[1] for i in ids):
            self._summaries = (step, {i: self.memo.get(self.summary_key(step, i)) or "" for i in ids})
        return self._summaries[1]

    def flush(self) -> None:
        """Write buffered call records (before rollouts are stored, and at every stage boundary)."""
        if self.call_log is not None and hasattr(self.call_log, "flush"):
            if self.call_log.flush(FLUSH_WAIT_S) is False:
                raise StoreError(f"the call log could not be written within {FLUSH_WAIT_S:.0f} s; the store is "
                                 "busy or failing (see the warnings above). Nothing after this point was stored; "
                                 "continue with --resume")

    def stage(self, name: str, step: int, msg: str) -> None:
        self.flush()
        self.on_stage(name, step, msg)

    def next_position(self, state: dict) -> tuple[int, int]:
        """(cursor, epoch) of the step after `state`'s."""
        cursor, epoch = state["cursor"] + self.cfg.batch_size, state["epoch"]
        if cursor >= len(self.examples):
            cursor, epoch = 0, epoch + 1
        return cursor, epoch

    def last_step(self, state: dict) -> bool:
        """True in the run's last step."""
        return self.next_position(state)[1] >= self.cfg.epochs

    def shed_connections(self) -> list[Awaitable[None]]:
        """Set the models' pooled connections aside now (no call in flight: between nodes) and return what
        closes them: the run's last step closes its rollouts' idle connections while the learner answers."""
        models = {id(self.policy): self.policy, id(self.learner): self.learner}.values()
        closing = [getattr(m, "shed", lambda: None)() for m in models]
        return [c for c in closing if c is not None]

    def reject(self, step: int) -> Callable[[str, str, str], None]:
        return lambda stage, reason, raw: self.store.record_rejection(self.run_id, step, stage, reason, raw)

    def seed(self, step: int, salt: int) -> int:
        return (self.cfg.seed * 7919 + step * 104_729 + salt) % 2_000_000_000

    def reference(self, qid: str) -> str | None:
        return self.examples[qid].answer if self.cfg.ground_truth else None
