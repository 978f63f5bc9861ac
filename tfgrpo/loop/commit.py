"""Commit a step: apply its ops to the store exactly once (resume-safe) with the prior settings they are
meant for, credit the gate's gain to what the batch added or changed, update the attribution counters and
the run row (per-step figures, totals for `runs`)."""

from __future__ import annotations

from typing import Any

from experience_store import Op
from tfgrpo.loop.gate import idle_gate
from tfgrpo.loop.rollout import tally, usable


def _apply(ctx, gate: dict[str, Any], ops: list[Op]) -> tuple[int, int, int]:
    """(version, ops applied, ops rejected by the store); the gate's delta goes to the changed ids."""
    lib = ctx.cfg.library
    res = ctx.store.apply(lib, ops, dedup=True, prior=ctx.cfg.prior_settings())
    if gate.get("status") == "accepted":
        ids = [r.exp_id for r in res.applied if r.exp_id is not None and r.kind.value != "DELETE"]
        ctx.store.add_gate_evidence(lib, ids, float(gate["delta"]))
    return res.version, len(res.applied), len(res.rejected)


def apply_step(ctx, state: dict[str, Any]) -> None:
    step, lib = state["step"], ctx.cfg.library
    ctx.flush()
    ops = [Op.model_validate(o) for o in state.get("ops", [])]
    gate = state.get("gate") or idle_gate(ctx, state) or {}  # an idle gate had no node: its record is made here
    version = ctx.step_version(step)
    applied = rejected = 0
    if version is None and ops:
        version, applied, rejected = _apply(ctx, gate, ops)
    elif version is None:
        version = ctx.store.current_version(lib)
    _bump(ctx, state)  # every step, ops or not; once per step even when a resumed step runs this again
    metrics = dict(ctx.metrics) if ctx.metrics is not None else ctx.store.run_metrics(ctx.run_id)
    totals = metrics["totals"] = dict(metrics.get("totals") or {})  # a copy: ctx.metrics changes once it is stored
    stat = metrics.get("last_step") or {}
    if stat.get("step") != step:  # (else the run row was written, then the process killed before this node's
        # checkpoint: the step is committed again on resume, its figures as the first commit recorded them)
        stat = _step_stat(state, gate, ctx.all_rollouts(state), version, applied, rejected)
        for k in ("rollouts_failed", "rollouts_truncated", "ops_applied", "proposals", "examples"):
            totals[k] = totals.get(k, 0) + stat[k]
        if stat["gate"] in ("accepted", "rejected"):
            totals[f"gate_{stat['gate']}"] = totals.get(f"gate_{stat['gate']}", 0) + 1
    metrics["last_step"] = stat
    ctx.step_stats.append(stat)
    verdict = stat["gate"]
    ctx.stage("apply", step, f"v{stat['version']}: {stat['ops_applied']} ops applied, {stat['ops_rejected']} "
                             "rejected" + (f"; gate {verdict}" if verdict not in (None, "off", "no ops") else ""))
    ctx.store.update_run(ctx.run_id, steps=step + 1, metrics=metrics)
    ctx.metrics = metrics
    ctx.on_step(stat)


def _step_stat(state: dict[str, Any], gate: dict[str, Any], rollouts: dict[str, list], version: int, applied: int,
               rejected: int) -> dict[str, Any]:
    return {"step": state["step"], "epoch": state["epoch"], **tally(rollouts), "groups": len(state["selected"]),
            "proposals": len(state.get("proposals", [])), "examples": len(state.get("examples", [])),
            "ops_applied": applied, "ops_rejected": rejected,
            "consolidation": state.get("consolidation", {}).get("status"), "gate": gate.get("status"),
            "gate_delta": gate.get("delta"), "version": version}


def _bump(ctx, state: dict[str, Any]) -> None:
    """Evidence counters, from mixed groups only (where some rollouts won and some lost): how often each
    experience was in the prompt of a rollout, and of a winning one. Elsewhere an experience's presence
    says nothing about its use, and counting there would only measure its age."""
    injected: dict[int, int] = {}
    wins: dict[int, int] = {}
    for qid, rows in ctx.all_rollouts(state).items():
        if state["selected"].get(qid) != "mixed":
            continue
        for r in rows:
            if not usable(r):
                continue
            for eid in r.get("extra", {}).get("injected", []):
                injected[eid] = injected.get(eid, 0) + 1
                if r["reward"] >= 1.0:
                    wins[eid] = wins.get(eid, 0) + 1
    if injected:  # ids injected exist in the library; any deleted by this step's ops are skipped by the store
        ctx.store.bump_counters_once(ctx.cfg.library, {e: (n, wins.get(e, 0)) for e, n in injected.items()},
                                     mark=f"{ctx.run_id}:{state['step']}")
