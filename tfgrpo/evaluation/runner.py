"""Run an evaluation: K samples per item through the gateway, rewards from the task, mean@k, pass@k
and a bootstrap interval. The prior (if any) is applied by the same function training uses."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from tfgrpo_common.event_loop import gather_or_cancel
from tasks.base import Example, Task, is_tool_task
from tfgrpo.errors import ModelUnreachable
from tfgrpo.evaluation.statistics import bootstrap_ci, mean_at_k, pass_at_k
from tfgrpo_common.chat import ChatModel

ApplyPrior = Callable[[list[dict]], list[dict]]


@dataclass
class ItemResult:
    id: str
    question: str
    answer: str
    scores: list[float]
    extracted: list[str | None]
    reasons: list[str]
    format_ok: list[bool]
    completions: list[str]
    finish_reasons: list[str | None]
    tokens: int = 0
    error: str | None = None
    tool_calls: list[int] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)


@dataclass
class EvalResult:
    task: str
    model: str
    k: int
    split: str
    library: str | None
    version: int | None
    items: list[ItemResult]
    wall_s: float
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)

    def item_means(self) -> list[float]:
        """Each item's mean score over its k samples (0 for an item with none), in item order."""
        return [sum(it.scores) / len(it.scores) if it.scores else 0.0 for it in self.items]

    def metrics(self) -> dict[str, Any]:
        scores = [it.scores for it in self.items]
        per_item = self.item_means()
        lo, hi = bootstrap_ci(per_item, seed=self.seed) if per_item else (0.0, 0.0)
        fmt = [f for it in self.items for f in it.format_ok]
        toks = sum(it.tokens for it in self.items)
        return {
            "task": self.task, "model": self.model, "split": self.split, "library": self.library,
            "version": self.version, "n_items": len(self.items), "k": self.k,
            "mean_at_k": mean_at_k(scores) if scores else 0.0, "ci_low": lo, "ci_high": hi,
            "pass_at_k": pass_at_k(scores, self.k) if scores else 0.0,
            "format_rate": (sum(fmt) / len(fmt)) if fmt else 0.0,
            "errors": sum(1 for it in self.items if it.error), "tokens": toks,
            "wall_s": round(self.wall_s, 2), "seed": self.seed, **self._agent_metrics(), **self.extra,
        }

    def _agent_metrics(self) -> dict[str, Any]:
        calls = [c for it in self.items for c in it.tool_calls]
        turns = [t for it in self.items for t in it.turns]
        if not turns:
            return {}
        return {"avg_tool_calls": sum(calls) / len(calls), "avg_turns": sum(turns) / len(turns)}

    def to_json(self) -> dict[str, Any]:
        return {**self.metrics(), "items": [it.__dict__ for it in self.items]}


async def _eval_item(model: ChatModel, task: Task, ex: Example, idx: int, k: int, seed: int, temperature: float,
                     max_tokens: int, apply_prior: ApplyPrior | None, stage: str = "eval") -> ItemResult:
    messages = task.messages(ex)
    if apply_prior is not None:
        messages = apply_prior(messages)
    res = ItemResult(ex.id, ex.question, ex.answer, [], [], [], [], [], [])
    try:
        if is_tool_task(task):
            return await _agent_item(model, task, ex, res, k, seed * 100_003 + idx * 101, temperature, max_tokens,
                                     apply_prior, stage)
        comps = await model.chat(messages, temperature=temperature, max_tokens=max_tokens, n=k, stage=stage,
                                 seed=seed * 100_003 + idx * 101, meta={"item": ex.id})
    except ModelUnreachable:  # the training run's circuit breaker tripped: the run stops, not the item
        raise
    except Exception as exc:  # a failed item scores 0 with the error kept
        res.error = str(exc)
        res.scores, res.extracted, res.reasons = [0.0] * k, [None] * k, [f"error: {exc}"] * k
        res.format_ok, res.completions, res.finish_reasons = [False] * k, [""] * k, [None] * k
        return res
    for c in comps:
        r = task.reward(ex, c.text)
        res.scores.append(r.score)
        res.extracted.append(r.extracted)
        res.reasons.append(r.reason)
        res.format_ok.append(r.format_ok)
        res.completions.append(c.text)
        res.finish_reasons.append(c.finish_reason)
        res.tokens += c.prompt_tokens + c.completion_tokens
    return res


async def _agent_item(model, task, ex, res: ItemResult, k: int, seed: int, temperature: float, max_tokens: int,
                      apply_prior, stage: str = "eval") -> ItemResult:
    trajs = await gather_or_cancel(*[
        task.rollout(model, ex, apply_prior=apply_prior, temperature=temperature, max_tokens=max_tokens,
                     seed=seed + i * 37, stage=stage, meta={"item": ex.id}) for i in range(k)])
    for t in trajs:
        r = task.reward(ex, t.final_text or "")
        score = 0.0 if t.error else r.score
        res.scores.append(score)
        res.extracted.append(r.extracted)
        res.reasons.append(f"error: {t.error}" if t.error else r.reason)
        res.format_ok.append(r.format_ok)
        res.completions.append(t.final_text or "")
        res.finish_reasons.append(t.stop_reason)
        res.tokens += t.prompt_tokens + t.completion_tokens
        res.tool_calls.append(t.n_tool_calls)
        res.turns.append(t.n_turns)
    return res


async def run_eval(model: ChatModel, task: Task, examples: list[Example], *, k: int = 1, seed: int = 0,
                   temperature: float = 0.7, max_tokens: int = 512, apply_prior: ApplyPrior | None = None,
                   on_item: Callable[[ItemResult], None] | None = None, library: str | None = None,
                   version: int | None = None, split: str = "test",
                   indices: Sequence[int] | None = None, stage: str = "eval") -> EvalResult:
    """Evaluate `examples`; items run concurrently (the gateway bounds concurrency).

    Each item's seed comes from its index: its position in `examples`, or `indices[i]` when given, so a
    resumed subset of a list keeps every item's original seed. `stage` labels the calls in the call log
    ("gate" for the training gate's scoring)."""
    if indices is not None and len(indices) != len(examples):
        raise ValueError(f"indices has {len(indices)} entries for {len(examples)} examples")
    start = time.perf_counter()
    positions = list(indices) if indices is not None else list(range(len(examples)))

    async def one(i: int, ex: Example) -> ItemResult:
        r = await _eval_item(model, task, ex, i, k, seed, temperature, max_tokens, apply_prior, stage)
        if on_item:
            on_item(r)
        return r

    items = await gather_or_cancel(*[one(i, ex) for i, ex in zip(positions, examples)])
    return EvalResult(task.name, getattr(model, "name", "?"), k, split, library, version, list(items),
                      time.perf_counter() - start, seed)
