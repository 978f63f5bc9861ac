"""How a step learns from one group: summarize its attempts (only when they do not fit the learner's
context), extract lessons and the problem pattern (with the attempts themselves when they fit), and keep a
worked example of a mixed group. Every helper reads only the usable rollouts of a group. The step runs
them per group as soon as the group is scored (`pipeline`); the `summarize` and `extract` nodes here run
them stage by stage, for a run checkpointed before that (they resume it where it stopped)."""

from __future__ import annotations

from typing import Any

from tfgrpo_common.event_loop import gather_or_cancel
from tfgrpo.loop.advantage import extract, summarize
from tfgrpo.loop.context import StepContext
from tfgrpo.loop.examples import example_op
from tfgrpo.loop.memo import HeldPuts, Memo
from tfgrpo.loop.rollout import usable


def _tokens(row: dict[str, Any]) -> int:
    return int(row.get("completion_tokens") or 0) or len(str(row.get("completion", ""))) // 4


def fits_context(ctx: StepContext, rows: list[dict[str, Any]]) -> bool:
    """True when the learner can read the group's attempts themselves instead of summaries."""
    return sum(_tokens(r) for r in rows) <= ctx.cfg.learner_context_tokens


def needs_summaries(ctx: StepContext, rows: list[dict[str, Any]]) -> bool:
    return ctx.cfg.learn_lessons and not fits_context(ctx, rows)


def group_rows(ctx: StepContext, state: dict, qid: str) -> list[dict[str, Any]]:
    return [r for r in ctx.rollouts(state, qid) if usable(r)]


def lessons(ctx: StepContext, version: int | None = None) -> list[dict[str, Any]]:
    """The library's live lessons as the learner sees them (it may revise one by id); those the step's rollouts
    read when `version` is theirs and still the current one (`StepContext.live_experiences`)."""
    return lessons_of(ctx.live_experiences(version))


def lessons_of(experiences: list) -> list[dict[str, Any]]:
    """The lessons among `experiences`, as the learner sees them."""
    return [{"id": e.id, "text": e.text} for e in experiences if e.kind == "lesson"]


async def summarize_rows(ctx: StepContext, step: int, qid: str, rows: list[dict[str, Any]],
                         seeds: list[int], memo: Memo | HeldPuts | None = None) -> list[str]:
    """One summary per rollout (memoized by rollout id, in `memo`, by default the step's)."""
    return await gather_or_cancel(*[
        summarize(ctx.learner, row, reference=ctx.reference(qid), memo=ctx.memo if memo is None else memo,
                  key=ctx.summary_key(step, row["id"]),
                  temperature=ctx.cfg.learner_temperature, seed=seed)
        for row, seed in zip(rows, seeds)])


async def extract_group(ctx: StepContext, step: int, qid: str, kind: str, rows: list[dict[str, Any]],
                        summaries: dict[str, str], library: list[dict], seed: int,
                        memo: Memo | HeldPuts | None = None) -> dict:
    """The learner's proposals for one group (memoized by question, in `memo`, by default the step's)."""
    if not ctx.cfg.learn_lessons:
        return {"proposals": [], "pattern": "", "call_id": None}
    ex = ctx.examples[qid]
    return await extract(
        ctx.learner, ex.question, rows, summaries, kind, reference=ctx.reference(qid),
        solution=ex.solution if ctx.cfg.ground_truth else None, library=library, k=ctx.cfg.max_proposals,
        max_words=ctx.cfg.max_words, retries=ctx.cfg.learner_retries, temperature=ctx.cfg.learner_temperature,
        max_tokens=ctx.cfg.learner_max_tokens, memo=ctx.memo if memo is None else memo,
        key=f"{ctx.run_id}:{step}:ext:{qid}",
        seed=seed, reject=ctx.reject(step))


def collect_group(ctx: StepContext, step: int, qid: str, kind: str, rows: list[dict],
                  res: dict) -> dict[str, list]:
    """One group's proposals and worked-example op, from its kind, usable rows and extraction (the pipeline
    makes them as each group finishes, not all at the step's end, where they would wait on one another)."""
    source = {"question_id": qid, "rollout_ids": [r["id"] for r in rows], "call_id": res["call_id"]}
    proposals = [{"text": t, **source} for t in res["proposals"]]
    proposals += [{"text": t, "revises": int(eid), **source} for eid, t in res.get("revisions", [])]
    examples = []
    if ctx.cfg.learn_examples and kind == "mixed" and ctx.cfg.ground_truth:
        op = example_op(rows, res.get("pattern", ""), run_id=ctx.run_id, step=step, qid=qid)
        examples = [op.model_dump(mode="json")] if op is not None else []
    return {"proposals": proposals, "examples": examples}


def gather_groups(parts: list[tuple[str, dict[str, list]]]) -> dict[str, list]:
    """The step's proposals and worked examples from (question id, `collect_group`'s part) per group, in
    question-id order whatever order the groups finished in."""
    out: dict[str, list] = {"proposals": [], "examples": []}
    for _, part in sorted(parts, key=lambda g: g[0]):
        out["proposals"] += part["proposals"]
        out["examples"] += part["examples"]
    return out


def collect(ctx: StepContext, step: int, learned: list[tuple[str, str, list[dict], dict]]) -> dict[str, list]:
    """The step's proposals and worked-example ops from (question id, kind, usable rows, extraction) per
    group, in question-id order whatever order the groups finished in."""
    return gather_groups([(qid, collect_group(ctx, step, qid, kind, rows, res)) for qid, kind, rows, res in learned])


async def summarize_stage(ctx: StepContext, state: dict) -> dict:
    """The `summarize` node (runs checkpointed before the per-group pipeline)."""
    step = state["step"]
    needs = [q for q in state["selected"] if needs_summaries(ctx, group_rows(ctx, state, q))]
    jobs = [(qid, row) for qid in needs for row in group_rows(ctx, state, qid)]
    ctx.stage("summarize", step, f"{len(jobs)} rollouts ({len(state['selected']) - len(needs)} groups shown "
                                 "to the learner as they are)")
    texts = await gather_or_cancel(*[summarize_rows(ctx, step, qid, [row], [ctx.seed(step, 50_000 + j)])
                                     for j, (qid, row) in enumerate(jobs)])
    ctx.keep_summaries(step, {row["id"]: t for (_, row), [t] in zip(jobs, texts)})
    return {"summaries": [row["id"] for _, row in jobs]}  # the texts are in the memo (and on ctx)


async def extract_stage(ctx: StepContext, state: dict) -> dict:
    """The `extract` node (runs checkpointed before the per-group pipeline)."""
    step, library = state["step"], lessons(ctx)
    groups = sorted(state["selected"].items())
    ctx.stage("extract", step, f"{len(groups)} groups")
    summaries = ctx.summaries(state)
    results = await gather_or_cancel(*[
        extract_group(ctx, step, q, k, group_rows(ctx, state, q), summaries, library, ctx.seed(step, 60_000 + j * 10))
        for j, (q, k) in enumerate(groups)])
    return collect(ctx, step, [(q, k, group_rows(ctx, state, q), res) for (q, k), res in zip(groups, results)])
