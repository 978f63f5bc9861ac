"""The stages of one step (the graph's nodes): rollouts, select, summarize, extract, consolidate, gate,
apply. Each stage reads what earlier stages left in the state and the store; LLM results are memoized and
rollouts are stored as soon as a group finishes, so resume repeats no finished call. The learning stages
live in `learn_stages`, the gate in `gate`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable

from experience_store import RolloutRow
from tasks.base import Example, Task
from tfgrpo.config import TrainConfig
from tfgrpo.loop.commit import apply_step
from tfgrpo.loop.gate import gate_stage
from tfgrpo.loop.learn_stages import extract_stage, summarize_stage
from tfgrpo.loop.learner import consolidate
from tfgrpo.loop.memo import Memo
from tfgrpo.loop.rollout import sample_group, score_group, select_groups, usable
from tfgrpo.prior import Prior
from tfgrpo_common.chat import ChatModel

MAX_LIBRARY = 40


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

    async def rollouts(self, state: dict) -> dict:
        step, lib = state["step"], self.cfg.library
        prior = Prior(self.store, lib, state["version"], **self.cfg.prior_settings())
        existing = {r.id: r.model_dump() for r in self.store.rollouts(self.run_id, step)}
        self.stage("rollouts", step, f"{len(state['batch'])} x {self.cfg.group_size} rollouts "
                                     f"(library v{state['version']}: {_kinds(self.store, lib, state['version'])})")

        async def group(i: int, qid: str) -> tuple[str, list[dict]]:
            ex = self.examples[qid]
            rows = await sample_group(
                self.policy, self.task, ex, run_id=self.run_id, step=step, epoch=state["epoch"],
                g=self.cfg.group_size, temperature=self.cfg.rollout.temperature,
                max_tokens=self.cfg.rollout.max_tokens, seed=self.seed(step, i * 1000),
                apply_prior=prior.apply_with_ids, version=state["version"], existing=existing)
            new = [r for r in rows if r["id"] not in existing]
            score_group(self.task, ex, rows, ground_truth=self.cfg.ground_truth) if new else None
            if new:
                self.flush()
                self.store.add_rollouts([RolloutRow.model_validate(r) for r in rows if r["id"] not in existing])
            return qid, rows

        done = await asyncio.gather(*[group(i, q) for i, q in enumerate(state["batch"])])
        return {"rollouts": dict(done)}

    async def select(self, state: dict) -> dict:
        has_ref = self.task.has_reference and self.cfg.ground_truth
        chosen = select_groups(state["rollouts"], learn_all_wrong=self.cfg.learn_all_wrong,
                               learn_all_right=self.cfg.learn_all_right, has_reference=has_ref)
        rows = [r for group in state["rollouts"].values() for r in group]
        rewards = [r["reward"] for r in rows if usable(r)]
        failed = sum(1 for r in rows if r.get("error"))
        cut = sum(1 for r in rows if not r.get("error") and r.get("finish_reason") == "length")
        mean = sum(rewards) / max(1, len(rewards))
        left_out = f"; {failed} failed and {cut} truncated rollouts left out of the groups" if failed or cut else ""
        self.stage("select", state["step"], f"mean reward {mean:.2f}; learning from {len(chosen)} groups "
                                            f"({', '.join(sorted(set(chosen.values()))) or 'none'}){left_out}")
        return {"selected": chosen}

    async def summarize(self, state: dict) -> dict:
        return await summarize_stage(self, state)

    async def extract(self, state: dict) -> dict:
        return await extract_stage(self, state)

    async def consolidate(self, state: dict) -> dict:
        step = state["step"]
        library = [e for e in self.store.experiences(self.cfg.library) if e.kind == "lesson"]
        examples = state.get("examples", [])
        self.stage("consolidate", step, f"{len(state['proposals'])} proposals vs {len(library)} lessons; "
                                        f"{len(examples)} worked examples")
        res = await consolidate(
            self.learner, library, state["proposals"], run_id=self.run_id, step=step, max_words=self.cfg.max_words,
            max_size=MAX_LIBRARY, retries=self.cfg.learner_retries, temperature=self.cfg.learner_temperature,
            max_tokens=self.cfg.learner_max_tokens, memo=self.memo, seed=self.seed(step, 70_000),
            reject=self.reject(step), fallback=self.cfg.fallback_add)
        return {"ops": [o.model_dump(mode="json") for o in res["ops"]] + examples,
                "consolidation": {"status": res["status"], "error": res["error"]}}

    async def gate(self, state: dict) -> dict:
        return await gate_stage(self, state)

    async def apply(self, state: dict) -> None:
        apply_step(self, state)


def _kinds(store, library: str, version: int) -> str:
    exps = store.experiences(library, version)
    examples = sum(1 for e in exps if e.kind == "example")
    return f"{len(exps) - examples} lessons, {examples} worked examples"
