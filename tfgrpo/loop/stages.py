"""The stages of one step (the graph's nodes): rollouts (each group sampled, scored, stored and learned
from as soon as it is: `pipeline`), consolidate, gate, apply. Each stage reads what earlier stages left in
the state and the store; LLM results are memoized and rollouts are stored as soon as a group finishes, so
resume repeats no finished call. The learning helpers live in `learn_stages`, the gate in `gate`; what
they all read is the `StepContext`. `select` (with `learn_stages`' summarize and extract) is the node of
runs checkpointed before the pipeline."""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from tfgrpo_common.event_loop import gather_or_cancel
from tfgrpo.loop.context import StepContext
from tfgrpo.loop.learner import consolidate
from tfgrpo.loop.prune import prune_op
from tfgrpo.loop.rollout import sample_group, score_group, select_groups, tally
from tfgrpo.loop.rollout_writer import RolloutWriter
from tfgrpo.prior import Prior

MAX_LIBRARY = 40


async def sample_scored(ctx: StepContext, state: dict, i: int, qid: str, prior: Prior,
                        existing: dict) -> tuple[list[dict], list[dict]]:
    """The group of question `qid` (the batch's i-th), sampled with the prior and scored (rollouts already
    stored are reused); its rows, also kept on `ctx` for the step, and the new ones, for the writer (which makes
    them `RolloutRow`s in its thread, after the burst of answers)."""
    step, ex = state["step"], ctx.examples[qid]
    rows = await sample_group(
        ctx.policy, ctx.task, ex, run_id=ctx.run_id, step=step, epoch=state["epoch"],
        g=ctx.cfg.group_size, temperature=ctx.cfg.rollout.temperature,
        max_tokens=ctx.cfg.rollout.max_tokens, seed=ctx.seed(step, i * 1000),
        apply_prior=prior.apply_with_ids, version=state["version"], existing=existing)
    new = [r for r in rows if r["id"] not in existing]
    if new:
        score_group(ctx.task, ex, rows, ground_truth=ctx.cfg.ground_truth)
    ctx.keep_rollouts(step, rows)
    return rows, new


def start_rollouts(ctx: StepContext, state: dict, note: str = "") -> tuple[Prior, dict, RolloutWriter]:
    """What sampling a step's groups needs: the prior of the step's library version, the rollouts a resumed
    step already stored (failed calls excepted: the model was down, a call timed out; those are sampled again
    and replace the stored row) and the writer that stores finished groups. The version's experiences are read
    once here for all of these, and kept on `ctx` (`library_read`) for the learner and consolidation."""
    step, lib = state["step"], ctx.cfg.library
    exps = ctx.store.experiences(lib, state["version"])
    ctx.library_read = (state["version"], exps)
    prior = Prior(ctx.store, lib, state["version"], **ctx.cfg.prior_settings(), experiences=exps)
    existing = {} if ctx.new_run else {r.id: r.model_dump() for r in ctx.store.rollouts(ctx.run_id, step)
                                       if not r.error}
    examples = sum(1 for e in exps if e.kind == "example")
    ctx.stage("rollouts", step, f"{len(state['batch'])} x {ctx.cfg.group_size} rollouts "
                                 f"(library v{state['version']}: {len(exps) - examples} lessons, {examples} worked "
                                 f"examples){note}")
    writer = RolloutWriter(ctx.store, ctx.flush)  # groups finishing together share a transaction
    return prior, existing, writer


def chosen_groups(ctx: StepContext, groups: dict[str, list[dict]]) -> dict[str, str]:
    """The groups learned from, and why (mixed, all wrong, all right), judged on their usable rollouts."""
    return select_groups(groups, learn_all_wrong=ctx.cfg.learn_all_wrong, learn_all_right=ctx.cfg.learn_all_right,
                         has_reference=ctx.task.has_reference and ctx.cfg.ground_truth)


def report_selection(ctx: StepContext, step: int, groups: dict[str, list[dict]], chosen: dict[str, str]) -> None:
    t = tally(groups)
    failed, cut = t["rollouts_failed"], t["rollouts_truncated"]
    left_out = f"; {failed} failed and {cut} truncated rollouts left out of the groups" if failed or cut else ""
    ctx.stage("select", step, f"mean reward {t['mean_reward']:.2f}; learning from {len(chosen)} groups "
                              f"({', '.join(sorted(set(chosen.values()))) or 'none'}){left_out}")


async def select_stage(ctx: StepContext, state: dict) -> dict:
    """The `select` node (runs checkpointed before the per-group pipeline, see `pipeline`)."""
    groups = ctx.all_rollouts(state)
    chosen = chosen_groups(ctx, groups)
    report_selection(ctx, state["step"], groups, chosen)
    return {"selected": chosen}


class Consolidation(NamedTuple):
    """A step's consolidation under way: the live experiences it was asked about, how many were lessons, and
    the learner's answer to come (with the reads made meanwhile)."""
    step: int
    live: list
    lessons: int
    answer: asyncio.Future


def begin_consolidation(ctx: StepContext, state: dict, proposals: list[dict], examples: list[dict]) -> Consolidation:
    """Send the learner the step's proposals now (`consolidate_stage` takes the answer). The step's last groups
    start it as soon as they are gathered, so the request leaves while the call log is flushed and the rollouts
    node checkpointed; a step killed before the answer asks again on resume (nothing was memoized)."""
    step = state["step"]
    live = ctx.live_experiences(state.get("version"))
    library = [e for e in live if e.kind == "lesson"]
    # while the learner consolidates, the texts the op batch will likely write (the worked examples, the
    # proposals it may keep as they are) are embedded in a worker thread, off the step's critical path, and what
    # the commit reads first is read
    ahead = [op["text"] for op in examples] + [p["text"] for p in proposals]
    # in the run's last step no more rollouts come: their idle connections are closed while the learner answers
    # (set aside before its call, which opens a connection of its own), not all at the run's end
    closing = ctx.shed_connections() if ctx.last_step(state) else []
    learner = asyncio.ensure_future(consolidate(
        ctx.learner, library, proposals, run_id=ctx.run_id, step=step, max_words=ctx.cfg.max_words,
        max_size=MAX_LIBRARY, retries=ctx.cfg.learner_retries, temperature=ctx.cfg.learner_temperature,
        max_tokens=ctx.cfg.learner_max_tokens, memo=ctx.memo, seed=ctx.seed(step, 70_000),
        reject=ctx.reject(step), fallback=ctx.cfg.fallback_add))
    answer = asyncio.ensure_future(gather_or_cancel(
        learner, asyncio.to_thread(_read_ahead, ctx, step, ahead),
        *([_close_after(learner, closing)] if closing else [])))
    return Consolidation(step, live, len(library), answer)


async def consolidate_stage(ctx: StepContext, state: dict) -> dict:
    step = state["step"]
    examples = state.get("examples", [])
    pending = ctx.take_ahead(step)
    if pending is None:  # not begun by the rollouts node (a resumed run, or one checkpointed before the pipeline)
        pending = begin_consolidation(ctx, state, state["proposals"], examples)
    ctx.stage("consolidate", step, f"{len(state['proposals'])} proposals vs {pending.lessons} lessons; "
                                    f"{len(examples)} worked examples")
    res, *_ = await pending.answer
    ops = [o.model_dump(mode="json") for o in res["ops"]] + examples
    prune = prune_op(pending.live, res["ops"], min_seen=ctx.cfg.prune_after, run_id=ctx.run_id, step=step)
    if prune is not None:
        ops.append(prune.model_dump(mode="json"))
        ctx.stage("consolidate", step, f"propose deleting E{prune.target_id}: {prune.reason}")
    return {"ops": ops, "consolidation": {"status": res["status"], "error": res["error"]}}


def _read_ahead(ctx: StepContext, step: int, texts: list[str]) -> None:
    ctx.store.embed_ahead(ctx.cfg.library, texts)
    ctx.read_ahead(step)


#: How long the closing of a last step's idle connections waits for the learner's request to leave: closed at
#: once, their thousand disconnections kept the fake server from reading that request for about 45 ms.
CLOSE_AFTER_S = 0.25


async def _close_after(learner: asyncio.Future, closing: list) -> None:
    """Close the connections set aside once the learner's request has surely left (or the learner is done)."""
    await asyncio.wait([learner], timeout=CLOSE_AFTER_S)
    for aw in closing:
        await aw
