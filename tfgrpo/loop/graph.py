"""One Training-Free GRPO step as a LangGraph StateGraph, looping until the last epoch: sample, rollouts
(each group sampled and learned from as soon as it is scored, `pipeline`), consolidate, gate, apply; when the
gate has nothing to score, consolidate commits the step itself (one node and one checkpoint fewer on the step's
critical path). Checkpointed after every node (thread id = run id), so a killed run resumes where it stopped. The nodes
select, summarize and extract (the stage-by-stage step) are reached only by resuming a run checkpointed
before the pipeline at one of them."""

from __future__ import annotations

import asyncio
import random
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from tfgrpo.loop.commit import apply_step
from tfgrpo.loop.context import StepContext
from tfgrpo.loop.gate import gate_stage, idle_gate
from tfgrpo.loop.learn_stages import extract_stage, summarize_stage
from tfgrpo.loop.pipeline import rollouts_stage
from tfgrpo.loop.stages import consolidate_stage, select_stage


class StepState(TypedDict, total=False):
    epoch: int
    cursor: int
    step: int
    batch: list[str]
    version: int
    rollouts: dict[str, list[str]]  # rollout ids by question; the rows are in the store
    selected: dict[str, str]
    summaries: list[str]  # rollout ids; the texts are in the memo
    proposals: list[dict[str, Any]]
    examples: list[dict[str, Any]]
    ops: list[dict[str, Any]]
    consolidation: dict[str, Any]
    gate: dict[str, Any]
    committed: bool  # the step's ops are applied and its run row written (by apply, or by consolidate)
    done: bool


def epoch_order(ids: list[str], seed: int, epoch: int) -> list[str]:
    """The run's question order for one epoch: shuffled with the seed, different each epoch."""
    order = list(ids)
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def after_commit(state: StepState) -> str:
    return END if state.get("done") else "sample"


def build_graph(ctx: StepContext):
    g = StateGraph(StepState)

    def sample(state: StepState) -> dict:
        order = epoch_order(list(ctx.examples), ctx.cfg.seed, state["epoch"])
        batch = order[state["cursor"]: state["cursor"] + ctx.cfg.batch_size]
        ctx.stage("sample", state["step"], f"epoch {state['epoch'] + 1}, {len(batch)} questions")
        return {"batch": batch, "version": ctx.store.current_version(ctx.cfg.library), "rollouts": {},
                "selected": {}, "summaries": [], "proposals": [], "examples": [], "ops": [], "consolidation": {},
                "gate": {}, "committed": False}

    def advance(state: StepState) -> dict:
        cursor, epoch = ctx.next_position(state)
        return {"cursor": cursor, "epoch": epoch, "step": state["step"] + 1, "done": epoch >= ctx.cfg.epochs,
                "rollouts": {}, "summaries": [], "proposals": [], "examples": [], "ops": [], "gate": {},
                "committed": True}

    def apply_and_advance(state: StepState) -> dict:
        if ctx.last_step(state):  # the memo's last use was before the commit: it closes while the commit writes
            ctx.memo.close_soon()
        apply_step(ctx, state)
        return advance(state)

    async def consolidate_and_commit(state: StepState) -> dict:
        out = await consolidate_stage(ctx, state)
        merged = {**state, **out}
        if not idle_gate(ctx, merged):
            return out  # the gate node scores the ops, then apply commits them
        # nothing for the gate to score: the step is committed here, with one checkpoint after both. Killed
        # before that checkpoint, the node runs again: consolidation's answer comes from the memo, the commit is
        # made once (`apply_step` reads what the store already holds)
        return {**out, **await asyncio.to_thread(apply_and_advance, merged)}

    def node(stage):  # a stage function bound to this run's context
        async def run(state: StepState) -> dict:
            return await stage(ctx, state)
        return run

    g.add_node("sample", sample)
    for name, stage in (("rollouts", rollouts_stage), ("select", select_stage), ("summarize", summarize_stage),
                        ("extract", extract_stage), ("gate", gate_stage)):
        g.add_node(name, node(stage))
    g.add_node("consolidate", consolidate_and_commit)
    g.add_node("apply", apply_and_advance)
    g.add_edge(START, "sample")
    # an idle gate (no slice, or no ops to score) is no node of its own, nor is apply then: consolidate commits
    g.add_conditional_edges("consolidate", lambda s: after_commit(s) if s.get("committed") else "gate",
                            ["gate", "sample", END])
    for a, b in (("sample", "rollouts"), ("rollouts", "consolidate"), ("gate", "apply"),
                 # a run checkpointed before the per-group pipeline may stop at one of these; it resumes there
                 ("select", "summarize"), ("summarize", "extract"), ("extract", "consolidate")):
        g.add_edge(a, b)
    g.add_conditional_edges("apply", after_commit, ["sample", END])
    return g
