"""The gate: an op batch becomes a version only if the library it leaves scores better than the current one
on a fixed validation slice of train questions, held out from learning (same items, same seeds, greedy).

The proposed library is planned exactly as the store would apply it (`ExperienceStore.preview`) and
rendered by the same `Prior` as everywhere else, through a read-only view. A version's scores are cached in
the memo, so a slice is never scored twice for one version (and a resumed step repeats no gate call).
Rejected batches are recorded with their ops and scores (`store.gate_decisions`)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from experience_store import Experience, Op
from tfgrpo.loop.context import StepContext
from tfgrpo.evaluation.runner import run_eval
from tfgrpo.evaluation.statistics import gain_p_value
from tfgrpo.prior import Prior

GATE_SEED = 7_777


class ProposedLibrary:
    """A store-like, read-only view of a library as a proposed batch would leave it (enough for `Prior`)."""

    VERSION = -1

    def __init__(self, store, library: str, experiences: list[Experience]) -> None:
        self.store, self.library, self.exps = store, library, experiences
        self._vectors: np.ndarray | None = None

    def current_version(self, library: str) -> int:
        return self.VERSION

    def experiences(self, library: str, version: int | None = None) -> list[Experience]:
        return list(self.exps)

    def count_tokens(self, text: str) -> int:
        return self.store.count_tokens(text)

    def search(self, library: str, query: str, k: int, version: int | None = None, kind: str | None = None,
               token_cap: int | None = None) -> list[tuple[Experience, float]]:
        if not self.exps or k <= 0:
            return []
        embedder = self.store.embedder_for(library)
        if self._vectors is None:
            self._vectors = np.asarray(embedder.embed([e.text for e in self.exps]), dtype=np.float32)
        sims = self._vectors @ np.asarray(embedder.embed([query])[0], dtype=np.float32)
        order = [i for i in np.argsort(-sims, kind="stable") if kind is None or self.exps[i].kind == kind]
        return [(self.exps[i], float(sims[i])) for i in order[:k]]


def slice_key(ctx: StepContext) -> str:
    """Identity of the slice and of how it is scored: items, settings, prior."""
    ids = ",".join(sorted(ex.id for ex in ctx.gate_examples))
    what = f"{ids}|{ctx.cfg.rollout.max_tokens}|{sorted(ctx.cfg.prior_settings().items())}"
    return hashlib.sha256(what.encode()).hexdigest()[:16]


async def score(ctx: StepContext, prior: Prior) -> list[float]:
    """Per-item scores of the policy with `prior` on the slice (greedy, fixed seed)."""
    res = await run_eval(ctx.policy, ctx.task, ctx.gate_examples, k=1, seed=GATE_SEED, temperature=0.0,
                         max_tokens=ctx.cfg.rollout.max_tokens, apply_prior=prior.apply, split=ctx.cfg.split,
                         stage="gate")
    return res.item_means()


async def version_scores(ctx: StepContext, version: int) -> list[float]:
    key = f"gate:{ctx.cfg.library}:v{version}:{slice_key(ctx)}"
    cached = ctx.memo.get(key)
    if cached is None:
        cached = await score(ctx, Prior(ctx.store, ctx.cfg.library, version, **ctx.cfg.prior_settings()))
        ctx.memo.put(key, cached)
    return cached


async def gate_stage(ctx: StepContext, state: dict) -> dict:
    """Keep the step's ops only if they clear the gate; record the decision either way."""
    step, ops = state["step"], state.get("ops", [])
    if not ops or not ctx.gate_examples:
        return {"gate": {"status": "off" if not ctx.gate_examples else "no ops"}}
    key = f"{ctx.run_id}:{step}:gate"
    decision = ctx.memo.get(key)
    if decision is None:
        decision = await _decide(ctx, state["version"], [Op.model_validate(o) for o in ops])
        ctx.memo.put(key, decision)
    _record(ctx, state, decision, ops)
    ctx.stage("gate", step, describe(decision, ctx.cfg.gate_threshold, ctx.cfg.gate_alpha))
    verdict = "accepted" if decision["accepted"] else "rejected"
    summary = {k: v for k, v in decision.items() if k != "items"}  # per-item scores live in the store
    return {"ops": ops if decision["accepted"] else [], "gate": {"status": verdict, **summary}}


def describe(decision: dict[str, Any], threshold: float, alpha: float) -> str:
    """One line: the verdict, both scores, the items each side won alone, and what passing needed."""
    verdict = "accepted" if decision["accepted"] else "rejected"
    won = f", +{decision['gained']}/-{decision['lost']} items" if decision.get("gained") is not None else ""
    p = f", p={decision['p_value']:.3f}" if decision.get("p_value") is not None else ""
    needs = f"delta > {threshold:+.3f}" + (f" and p <= {alpha:g}" if alpha < 1 else "")
    return (f"{verdict}: {decision['score_new']:.3f} vs {decision['score_base']:.3f} on {decision['n_items']} "
            f"held-out train questions (delta {decision['delta']:+.3f}{won}{p}; needs {needs})")


def passes(base: list[float], new: list[float], threshold: float, alpha: float) -> dict[str, Any]:
    """The gate's test on paired per-item slice scores: the mean gain must exceed `threshold` and, unless
    `alpha` is 1, the one-sided paired sign test must give p <= `alpha` (a small slice cannot tell a
    lead of an item or two from luck, and a lucky batch that passes is a harmful one as often as not)."""
    s_base, s_new = float(np.mean(base)), float(np.mean(new))
    p = gain_p_value(new, base)
    accepted = s_new - s_base > threshold and (alpha >= 1.0 or p <= alpha)
    return {"accepted": accepted, "score_base": s_base, "score_new": s_new, "delta": s_new - s_base,
            "p_value": p, "gained": sum(n > b for n, b in zip(new, base)),
            "lost": sum(n < b for n, b in zip(new, base)), "n_items": len(new)}


async def _decide(ctx: StepContext, version: int, ops: list[Op]) -> dict[str, Any]:
    base = await version_scores(ctx, version)
    view = ProposedLibrary(ctx.store, ctx.cfg.library, ctx.store.preview(ctx.cfg.library, ops))
    new = await score(ctx, Prior(view, ctx.cfg.library, ProposedLibrary.VERSION, **ctx.cfg.prior_settings()))
    decision = passes(base, new, ctx.cfg.gate_threshold, ctx.cfg.gate_alpha)
    if decision["accepted"]:  # the next step's base: the version these ops make scores as their preview did
        ctx.memo.put(f"gate:{ctx.cfg.library}:v{version + 1}:{slice_key(ctx)}", new)
    return {**decision, "base_version": version, "items": {"base": list(base), "new": list(new)}}


def _record(ctx: StepContext, state: dict, decision: dict[str, Any], ops: list[dict]) -> None:
    """One decision row per (run, step), also when a resumed step passes here again."""
    done = {(d["run_id"], d["step"]) for d in ctx.store.gate_decisions(ctx.cfg.library, ctx.run_id)}
    if (ctx.run_id, state["step"]) in done:
        return
    ctx.store.record_gate(ctx.cfg.library, run_id=ctx.run_id, step=state["step"],
                          base_version=decision["base_version"],
                          new_version=decision["base_version"] + 1 if decision["accepted"] else None,
                          n_items=decision["n_items"], score_base=decision["score_base"],
                          score_new=decision["score_new"], threshold=ctx.cfg.gate_threshold,
                          accepted=decision["accepted"], ops=ops, alpha=ctx.cfg.gate_alpha,
                          p_value=decision.get("p_value"), gained=decision.get("gained"),
                          lost=decision.get("lost"), item_scores=decision.get("items"))
