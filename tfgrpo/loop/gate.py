"""The gate: an op batch becomes a version only if the library it leaves scores better than the current one
on a fixed validation slice of train questions, held out from learning (same items, same seeds, greedy).

The proposed library is planned exactly as the store would apply it (`ExperienceStore.preview`) and
rendered by the same `Prior` as everywhere else, through a read-only view. A version's scores are cached in
the memo, so a slice is never scored twice for one version (and a resumed step repeats no gate call).
Rejected batches are recorded with their ops and scores (`store.gate_decisions`).

The proposed library's items are scored concurrently, and the scoring stops as soon as the batch cannot
pass whatever the items not yet scored would score (each at the best reward, 1): the test is monotone in
each item's gain, so stopping never changes a decision, it only saves the calls of a batch already lost.

An item whose call failed (a timeout, a server error) has no score on that side: it says nothing about
either library, so its pair is left out of the comparison and counted as `failed`, never scored 0 (on a
slow machine the proposed side's timeouts would otherwise read as losses). The early stop stays exact for
a threshold <= 0 (the default): a pair left out had been counted at its best case (a gain or a tie), and
dropping it can only lower the best mean delta the batch could reach and raise its best p."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import numpy as np

from experience_store import Experience, Op
from tfgrpo.loop.context import StepContext
from tfgrpo.evaluation.runner import run_eval
from tfgrpo.evaluation.statistics import gain_p_value
from tfgrpo.prior import Prior

GATE_SEED = 7_777
REWARD_MAX = 1.0  # rewards are in [0, 1] (tasks.base.Reward)


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


async def score(ctx: StepContext, prior: Prior, positions: list[int] | None = None) -> list[float | None]:
    """Per-item scores of the policy with `prior` on the slice items at `positions` (all by default; greedy,
    fixed seed, each item's seed from its position in the slice); None for an item whose call failed."""
    at = list(range(len(ctx.gate_examples))) if positions is None else positions
    res = await run_eval(ctx.policy, ctx.task, [ctx.gate_examples[i] for i in at], k=1, seed=GATE_SEED,
                         temperature=0.0, max_tokens=ctx.cfg.rollout.max_tokens, apply_prior=prior.apply,
                         split=ctx.cfg.split, stage="gate", indices=at)
    return [None if it.error else m for it, m in zip(res.items, res.item_means())]


def best_case(base: list[float | None], scored: dict[int, float | None]) -> list[float | None]:
    """The proposal's scores if every item not yet scored got the best reward."""
    return [scored[i] if i in scored else max(REWARD_MAX, b or 0.0) for i, b in enumerate(base)]


def can_pass(base: list[float | None], scored: dict[int, float | None], threshold: float, alpha: float) -> bool:
    """Whether the proposed library could still pass if every item not yet scored got the best reward."""
    return passes(base, best_case(base, scored), threshold, alpha)["accepted"]


async def score_until_decided(ctx: StepContext, prior: Prior, base: list[float | None]) -> dict[int, float | None]:
    """The proposed library's score per slice item, by position; only the items scored before the batch
    could no longer pass (the calls still queued or running then are cancelled)."""
    scored: dict[int, float | None] = {}
    if not can_pass(base, scored, ctx.cfg.gate_threshold, ctx.cfg.gate_alpha):
        return scored  # not even a perfect score on every item would pass: nothing to score
    jobs = {asyncio.create_task(score(ctx, prior, [i])): i for i in range(len(base))}
    pending = set(jobs)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for job in done:
                [scored[jobs[job]]] = job.result()  # a fatal error (budget, model gone) stops the run here
            if pending and not can_pass(base, scored, ctx.cfg.gate_threshold, ctx.cfg.gate_alpha):
                break
    finally:
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return scored


async def version_scores(ctx: StepContext, version: int) -> list[float | None]:
    key = f"gate:{ctx.cfg.library}:v{version}:{slice_key(ctx)}"
    cached = ctx.memo.get(key)
    if cached is None:
        cached = await score(ctx, Prior(ctx.store, ctx.cfg.library, version, **ctx.cfg.prior_settings()))
        ctx.memo.put(key, cached)
    return cached


def idle_gate(ctx: StepContext, state: dict) -> dict | None:
    """The gate's record when it has nothing to score: no slice ("off") or no ops ("no ops"); None when it has.
    The consolidate node then commits the step itself (no gate or apply node, no checkpoints of their own)."""
    if not ctx.gate_examples:
        return {"status": "off"}
    if not state.get("ops"):
        return {"status": "no ops"}
    return None


async def gate_stage(ctx: StepContext, state: dict) -> dict:
    """Keep the step's ops only if they clear the gate; record the decision either way."""
    step, ops = state["step"], state.get("ops", [])
    idle = idle_gate(ctx, state)
    if idle is not None:  # a run checkpointed before consolidate skipped an idle gate
        return {"gate": idle}
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
    n, failed = decision["n_items"], decision.get("failed") or 0
    cut = f"; {failed} item(s) left out, their call failed" if failed else ""
    if decision.get("ceiling"):
        top = decision["ceiling"]
        return (f"{verdict} without scoring it: even solving all {decision['slice_items']} held-out train questions "
                f"it would reach {top['score_new']:.3f} vs {decision['score_base']:.3f} (+{top['gained']} items, "
                f"p={decision['p_value']:.3f}), and passing needs {needs} (a larger --gate-items or --gate-alpha "
                "lets a gain show)")
    if decision.get("stopped_early"):
        scored = n + failed
        return (f"{verdict} after {scored} of {decision['slice_items']} held-out train questions: it could not "
                f"pass whatever the other {decision['slice_items'] - scored} scored ({decision['score_new']:.3f} vs "
                f"{decision['score_base']:.3f} on {n} compared, delta {decision['delta']:+.3f}{won}{p}{cut}; "
                f"needs {needs} on all)")
    return (f"{verdict}: {decision['score_new']:.3f} vs {decision['score_base']:.3f} on {n} "
            f"held-out train questions (delta {decision['delta']:+.3f}{won}{p}{cut}; needs {needs})")


def passes(base: list[float | None], new: list[float | None], threshold: float, alpha: float) -> dict[str, Any]:
    """The gate's test on paired per-item slice scores: the mean gain must exceed `threshold` and, unless
    `alpha` is 1, the one-sided paired sign test must give p <= `alpha` (a small slice cannot tell a
    lead of an item or two from luck, and a lucky batch that passes is a harmful one as often as not).
    Pairs with a failed call on either side (None) are left out and counted as `failed`."""
    pairs = [(b, n) for b, n in zip(base, new) if b is not None and n is not None]
    if not pairs:
        return {"accepted": False, "score_base": 0.0, "score_new": 0.0, "delta": 0.0, "p_value": 1.0, "gained": 0,
                "lost": 0, "n_items": 0, "failed": len(new)}
    b_, n_ = [b for b, _ in pairs], [n for _, n in pairs]
    s_base, s_new = float(np.mean(b_)), float(np.mean(n_))
    p = gain_p_value(n_, b_)
    accepted = s_new - s_base > threshold and (alpha >= 1.0 or p <= alpha)
    return {"accepted": accepted, "score_base": s_base, "score_new": s_new, "delta": s_new - s_base,
            "p_value": p, "gained": sum(n > b for b, n in pairs), "lost": sum(n < b for b, n in pairs),
            "n_items": len(pairs), "failed": len(new) - len(pairs)}


async def _decide(ctx: StepContext, version: int, ops: list[Op]) -> dict[str, Any]:
    base = await version_scores(ctx, version)
    view = ProposedLibrary(ctx.store, ctx.cfg.library, ctx.store.preview(ctx.cfg.library, ops))
    prior = Prior(view, ctx.cfg.library, ProposedLibrary.VERSION, **ctx.cfg.prior_settings())
    scored = await score_until_decided(ctx, prior, base)
    done = sorted(scored)
    if not done:  # nothing compared (n_items 0, no difference); p: the best the batch could have reached
        best = passes(base, best_case(base, {}), ctx.cfg.gate_threshold, ctx.cfg.gate_alpha)
        decision = {"accepted": False, "score_base": best["score_base"], "score_new": best["score_base"],
                    "delta": 0.0, "p_value": best["p_value"], "gained": 0, "lost": 0, "n_items": 0,
                    "ceiling": {"score_new": best["score_new"], "gained": best["gained"]}, "slice_items": len(base)}
    else:
        decision = passes([base[i] for i in done], [scored[i] for i in done], ctx.cfg.gate_threshold,
                          ctx.cfg.gate_alpha)
    if 0 < len(done) < len(base):  # stopped: the batch could not pass whatever the other items scored
        decision.update(accepted=False, stopped_early=True, slice_items=len(base))
    elif decision["accepted"]:  # the next step's base: the version these ops make scores as their preview did
        ctx.memo.put(f"gate:{ctx.cfg.library}:v{version + 1}:{slice_key(ctx)}", [scored[i] for i in done])
    return {**decision, "base_version": version, "items": {"base": list(base), "new": [scored.get(i) for i in
                                                                                      range(len(base))]}}


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
