"""The stages of one step (the graph's nodes): rollouts, select, summarize, extract, consolidate, apply.
Each stage reads what earlier stages left in the state and the store; LLM results are memoized and
rollouts are stored as soon as a group finishes, so resume repeats no finished call."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable

from experience_store import Op, RolloutRow
from tasks.base import Example, Task
from tfgrpo.loop.commit import apply_step
from tfgrpo.config import TrainConfig
from tfgrpo.loop.advantage import extract, summarize
from tfgrpo.loop.learner import consolidate
from tfgrpo_common.chat import ChatModel
from tfgrpo.loop.memo import Memo
from tfgrpo.prior import Prior
from tfgrpo.loop.rollout import sample_group, score_group, select_groups

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

    def flush(self) -> None:
        """Write buffered call records (before rollouts are stored, and at every stage boundary)."""
        if self.call_log is not None and hasattr(self.call_log, "flush"):
            self.call_log.flush()

    def stage(self, name: str, step: int, msg: str) -> None:
        self.flush()
        self.on_stage(name, step, msg)

    def reject(self, step: int) -> Callable[[str, str, str], None]:
        return lambda stage, reason, raw: self.store.record_rejection(self.run_id, step, stage, reason, raw)

    def _seed(self, step: int, salt: int) -> int:
        return (self.cfg.seed * 7919 + step * 104_729 + salt) % 2_000_000_000

    async def rollouts(self, state: dict) -> dict:
        step, lib = state["step"], self.cfg.library
        prior = Prior(self.store, lib, state["version"], mode="all", token_cap=self.cfg.prior_token_cap,
                      placement=self.cfg.placement)
        existing = {r.id: r.model_dump() for r in self.store.rollouts(self.run_id, step)}
        self.stage("rollouts", step, f"{len(state['batch'])} x {self.cfg.group_size} rollouts "
                                     f"(library v{state['version']}, {len(prior.select([]))} experiences)")

        async def group(i: int, qid: str) -> tuple[str, list[dict]]:
            ex = self.examples[qid]
            rows = await sample_group(
                self.policy, self.task, ex, run_id=self.run_id, step=step, epoch=state["epoch"],
                g=self.cfg.group_size, temperature=self.cfg.rollout.temperature,
                max_tokens=self.cfg.rollout.max_tokens, seed=self._seed(step, i * 1000),
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
        rewards = [r["reward"] for rows in state["rollouts"].values() for r in rows]
        mean = sum(rewards) / max(1, len(rewards))
        self.stage("select", state["step"], f"mean reward {mean:.2f}; learning from {len(chosen)} groups "
                                            f"({', '.join(sorted(set(chosen.values()))) or 'none'})")
        return {"selected": chosen}

    def _reference(self, qid: str) -> str | None:
        return self.examples[qid].answer if self.cfg.ground_truth else None

    async def summarize(self, state: dict) -> dict:
        step = state["step"]
        jobs = [(qid, row) for qid in state["selected"] for row in state["rollouts"][qid]]
        self.stage("summarize", step, f"{len(jobs)} rollouts")
        texts = await asyncio.gather(*[
            summarize(self.learner, row, reference=self._reference(qid), memo=self.memo,
                      key=f"{self.run_id}:{step}:sum:{row['id']}", temperature=self.cfg.learner_temperature,
                      seed=self._seed(step, 50_000 + j))
            for j, (qid, row) in enumerate(jobs)])
        return {"summaries": {row["id"]: t for (_, row), t in zip(jobs, texts)}}

    async def extract(self, state: dict) -> dict:
        step, lib = state["step"], [e.text for e in self.store.experiences(self.cfg.library)]
        self.stage("extract", step, f"{len(state['selected'])} groups")

        async def one(j: int, qid: str, kind: str) -> list[dict]:
            rows, ex = state["rollouts"][qid], self.examples[qid]
            res = await extract(
                self.learner, ex.question, rows, state["summaries"], kind, reference=self._reference(qid),
                solution=ex.solution if self.cfg.ground_truth else None, library=lib, k=self.cfg.max_proposals,
                max_words=self.cfg.max_words, retries=self.cfg.learner_retries,
                temperature=self.cfg.learner_temperature, memo=self.memo, key=f"{self.run_id}:{step}:ext:{qid}",
                seed=self._seed(step, 60_000 + j * 10), reject=self.reject(step))
            return [{"text": t, "question_id": qid, "rollout_ids": [r["id"] for r in rows],
                     "call_id": res["call_id"]} for t in res["proposals"]]

        parts = await asyncio.gather(*[one(j, q, k) for j, (q, k) in enumerate(sorted(state["selected"].items()))])
        return {"proposals": [p for part in parts for p in part]}

    async def consolidate(self, state: dict) -> dict:
        step = state["step"]
        library = self.store.experiences(self.cfg.library)
        self.stage("consolidate", step, f"{len(state['proposals'])} proposals vs {len(library)} experiences")
        res = await consolidate(
            self.learner, library, state["proposals"], run_id=self.run_id, step=step, max_words=self.cfg.max_words,
            max_size=MAX_LIBRARY, retries=self.cfg.learner_retries, temperature=self.cfg.learner_temperature,
            max_tokens=self.cfg.learner_max_tokens, memo=self.memo, seed=self._seed(step, 70_000),
            reject=self.reject(step), fallback=self.cfg.fallback_add)
        return {"ops": [o.model_dump(mode="json") for o in res["ops"]],
                "consolidation": {"status": res["status"], "error": res["error"]}}

    async def apply(self, state: dict) -> None:
        apply_step(self, state)
