"""The learning stages of a step: summarize (only the groups whose attempts do not fit the learner's
context), extract (lessons and the problem pattern per group, with the attempts themselves when they fit)
and the worked examples of mixed groups. Every stage reads only the usable rollouts of a group."""

from __future__ import annotations

from typing import Any

from tfgrpo_common.event_loop import gather_or_cancel
from tfgrpo.loop.advantage import extract, summarize
from tfgrpo.loop.context import StepContext
from tfgrpo.loop.examples import example_op
from tfgrpo.loop.rollout import usable


def _tokens(row: dict[str, Any]) -> int:
    return int(row.get("completion_tokens") or 0) or len(str(row.get("completion", ""))) // 4


def fits_context(ctx: StepContext, rows: list[dict[str, Any]]) -> bool:
    """True when the learner can read the group's attempts themselves instead of summaries."""
    return sum(_tokens(r) for r in rows) <= ctx.cfg.learner_context_tokens


def group_rows(ctx: StepContext, state: dict, qid: str) -> list[dict[str, Any]]:
    return [r for r in ctx.rollouts(state, qid) if usable(r)]


async def summarize_stage(ctx: StepContext, state: dict) -> dict:
    step = state["step"]
    needs = [q for q in state["selected"] if ctx.cfg.learn_lessons and not fits_context(ctx, group_rows(ctx, state, q))]
    jobs = [(qid, row) for qid in needs for row in group_rows(ctx, state, qid)]
    ctx.stage("summarize", step, f"{len(jobs)} rollouts ({len(state['selected']) - len(needs)} groups shown "
                                 "to the learner as they are)")
    texts = await gather_or_cancel(*[
        summarize(ctx.learner, row, reference=ctx.reference(qid), memo=ctx.memo,
                  key=ctx.summary_key(step, row["id"]), temperature=ctx.cfg.learner_temperature,
                  seed=ctx.seed(step, 50_000 + j))
        for j, (qid, row) in enumerate(jobs)])
    ctx.keep_summaries(step, {row["id"]: t for (_, row), t in zip(jobs, texts)})
    return {"summaries": [row["id"] for _, row in jobs]}  # the texts are in the memo (and on ctx)


async def _extract_group(ctx: StepContext, state: dict, j: int, qid: str, kind: str, library: list[dict]) -> dict:
    step, rows, ex = state["step"], group_rows(ctx, state, qid), ctx.examples[qid]
    if not ctx.cfg.learn_lessons:
        return {"proposals": [], "pattern": "", "call_id": None}
    return await extract(
        ctx.learner, ex.question, rows, ctx.summaries(state), kind, reference=ctx.reference(qid),
        solution=ex.solution if ctx.cfg.ground_truth else None, library=library, k=ctx.cfg.max_proposals,
        max_words=ctx.cfg.max_words, retries=ctx.cfg.learner_retries, temperature=ctx.cfg.learner_temperature,
        max_tokens=ctx.cfg.learner_max_tokens, memo=ctx.memo, key=f"{ctx.run_id}:{step}:ext:{qid}",
        seed=ctx.seed(step, 60_000 + j * 10), reject=ctx.reject(step))


async def extract_stage(ctx: StepContext, state: dict) -> dict:
    step = state["step"]
    library = [{"id": e.id, "text": e.text} for e in ctx.store.experiences(ctx.cfg.library) if e.kind == "lesson"]
    groups = sorted(state["selected"].items())
    ctx.stage("extract", step, f"{len(groups)} groups")
    results = await gather_or_cancel(*[_extract_group(ctx, state, j, q, k, library) for j, (q, k) in enumerate(groups)])
    proposals, examples = [], []
    for (qid, kind), res in zip(groups, results):
        rows = group_rows(ctx, state, qid)
        source = {"question_id": qid, "rollout_ids": [r["id"] for r in rows], "call_id": res["call_id"]}
        proposals += [{"text": t, **source} for t in res["proposals"]]
        proposals += [{"text": t, "revises": int(eid), **source} for eid, t in res.get("revisions", [])]
        if ctx.cfg.learn_examples and kind == "mixed" and ctx.cfg.ground_truth:
            op = example_op(rows, res.get("pattern", ""), run_id=ctx.run_id, step=step, qid=qid)
            examples += [op.model_dump(mode="json")] if op is not None else []
    return {"proposals": proposals, "examples": examples}
