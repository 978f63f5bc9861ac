"""Apply a step's ops to the store exactly once (resume-safe), update counters and the run row."""

from __future__ import annotations

from typing import Any

from experience_store import Op


def _already_applied(store, library: str, run_id: str, step: int) -> int | None:
    hits = [h.version for h in store.history(library)
            if h.provenance.run_id == run_id and h.provenance.step == step]
    return max(hits) if hits else None


def apply_step(ctx, state: dict[str, Any]) -> None:
    step, lib = state["step"], ctx.cfg.library
    ctx.flush()
    ops = [Op.model_validate(o) for o in state.get("ops", [])]
    version = _already_applied(ctx.store, lib, ctx.run_id, step)
    applied = rejected = 0
    if version is None and ops:
        res = ctx.store.apply(lib, ops, dedup=True)
        version, applied, rejected = res.version, len(res.applied), len(res.rejected)
    elif version is None:
        version = ctx.store.current_version(lib)
    _bump(ctx, state)  # every step, ops or not; once per step even when a resumed step runs this again
    rewards = [r["reward"] for rows in state["rollouts"].values() for r in rows]
    stat = {"step": step, "epoch": state["epoch"], "rollouts": len(rewards),
            "mean_reward": sum(rewards) / max(1, len(rewards)), "groups": len(state["selected"]),
            "proposals": len(state.get("proposals", [])), "ops_applied": applied, "ops_rejected": rejected,
            "consolidation": state.get("consolidation", {}).get("status"), "version": version}
    ctx.step_stats.append(stat)
    ctx.stage("apply", step, f"v{version}: {applied} ops applied, {rejected} rejected")
    metrics = dict(ctx.store.get_run(ctx.run_id).get("metrics") or {})
    metrics["last_step"] = stat
    ctx.store.update_run(ctx.run_id, steps=step + 1, metrics=metrics)


def _bump(ctx, state: dict[str, Any]) -> None:
    """Attribution counters: every injection, and injections into winning rollouts."""
    injected: dict[int, int] = {}
    wins: dict[int, int] = {}
    for rows in state["rollouts"].values():
        for r in rows:
            for eid in r.get("extra", {}).get("injected", []):
                injected[eid] = injected.get(eid, 0) + 1
                if r["reward"] >= 1.0:
                    wins[eid] = wins.get(eid, 0) + 1
    if injected:  # ids injected exist in the library; any deleted by this step's ops are skipped by the store
        ctx.store.bump_counters_once(ctx.cfg.library, {e: (n, wins.get(e, 0)) for e, n in injected.items()},
                                     mark=f"{ctx.run_id}:{state['step']}")
