"""The step's first node: each question's group goes through rollouts -> select -> summarize (only when the
attempts do not fit the learner) -> extract on its own, so the learner reads a group as soon as the group is
scored, while other groups are still being sampled. The step waits for its slowest group, not for the
slowest rollout of the batch and then the slowest learner call: with a local model, learner calls fill the
slots that the batch's last rollouts leave idle; with a hosted one, the step's wall time approaches its
critical path (rollout, learner, consolidate). The groups are started one at a time (`gather_or_cancel`'s
`stagger`), so the first requests leave before the last ones are built. Everything a group produces is stored
or memoized as it finishes (its learner results once its rollouts are stored), so a killed step resumes without
repeating a finished call."""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from tfgrpo_common.event_loop import gather_or_cancel
from tfgrpo.loop.context import StepContext
from tfgrpo.loop.learn_stages import (collect_group, extract_group, gather_groups, lessons_of, needs_summaries,
                                     summarize_rows)
from tfgrpo.loop.rollout import usable
from tfgrpo.loop.stages import begin_consolidation, chosen_groups, report_selection, sample_scored, start_rollouts


class Group(NamedTuple):
    """What one group came to: its rollouts, why it is learned from (None: it is not), the usable rollouts
    the learner read, their summaries (only when they did not fit) and what the learner's extraction gave
    (its proposals and worked example, `collect_group`)."""
    qid: str
    rows: list[dict]
    kind: str | None = None
    usable: list[dict] = []
    summaries: dict[str, str] = {}
    learned: dict[str, list] | None = None


async def rollouts_stage(ctx: StepContext, state: dict) -> dict:
    step = state["step"]
    prior, existing, writer = start_rollouts(ctx, state, "; each group is learned from once it is scored")
    # the lessons as the step started (the op batch is applied after consolidate), from the read start_rollouts
    # just made (nothing ran in between: no second look at the library's version)
    library = lessons_of(ctx.library_read[1])
    memo_commits = ctx.memo.group_commit()  # the groups whose learner answers come in together share a write

    async def group(i: int, qid: str) -> Group:
        rows, new = await sample_scored(ctx, state, i, qid, prior, existing)
        kind = chosen_groups(ctx, {qid: rows}).get(qid)
        if kind is None:
            await writer.write(new)
            return Group(qid, rows)
        good = [r for r in rows if usable(r)]
        memo = ctx.memo.held()  # the learner's results are memoized once the rollouts they read are stored

        async def learn() -> tuple[dict[str, str], dict]:
            summaries: dict[str, str] = {}
            if needs_summaries(ctx, good):
                seeds = [ctx.seed(step, 50_000 + i * 100 + k) for k in range(len(good))]
                texts = await summarize_rows(ctx, step, qid, good, seeds, memo)
                summaries = dict(zip([r["id"] for r in good], texts))
            return summaries, await extract_group(ctx, step, qid, kind, good, summaries, library,
                                                  ctx.seed(step, 60_000 + i * 10), memo)

        # the group's rows are written while the learner reads them: the write (the call log's flush, then one
        # transaction shared with the groups that finished meanwhile) is off the step's critical path
        _, (summaries, res) = await gather_or_cancel(writer.write(new), learn())
        await memo.commit_with(memo_commits)
        return Group(qid, rows, kind, good, summaries, collect_group(ctx, step, qid, kind, good, res))

    done: list[Group] = await gather_or_cancel(*[group(i, q) for i, q in enumerate(state["batch"])], stagger=True)
    learned_from = [g for g in done if g.kind is not None]
    chosen = {g.qid: g.kind for g in learned_from}
    learned = gather_groups([(g.qid, g.learned) for g in learned_from])
    # the learner's consolidation request leaves now, while the last call records are written and this node's
    # checkpoint after them (the consolidate node takes its answer)
    ctx.ahead = begin_consolidation(ctx, state, learned["proposals"], learned["examples"])
    await asyncio.to_thread(ctx.flush)
    report_selection(ctx, step, {g.qid: g.rows for g in done}, chosen)
    summaries = {rid: text for g in learned_from for rid, text in g.summaries.items()}
    ctx.keep_summaries(step, summaries)
    shown = sum(1 for g in learned_from if not g.summaries)
    ctx.stage("extract", step, f"{len(chosen)} groups learned from ({shown} shown to the learner as they are, "
                               f"{len(summaries)} rollouts summarized): {len(learned['proposals'])} proposals, "
                               f"{len(learned['examples'])} worked examples")
    return {"rollouts": {g.qid: [r["id"] for r in g.rows] for g in done}, "selected": chosen,
            "summaries": sorted(summaries), **learned}
