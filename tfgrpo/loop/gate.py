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
    verdict = "accepted" if decision["accepted"] else "rejected"
    ctx.stage("gate", step, f"{verdict}: {decision['score_new']:.3f} vs {decision['score_base']:.3f} on "
                            f"{decision['n_items']} held-out train questions (delta {decision['delta']:+.3f}, "
                            f"needs > {ctx.cfg.gate_threshold:+.3f})")
    return {"ops": ops if decision["accepted"] else [], "gate": {"status": verdict, **decision}}


async def _decide(ctx: StepContext, version: int, ops: list[Op]) -> dict[str, Any]:
    base = await version_scores(ctx, version)
    view = ProposedLibrary(ctx.store, ctx.cfg.library, ctx.store.preview(ctx.cfg.library, ops))
    new = await score(ctx, Prior(view, ctx.cfg.library, ProposedLibrary.VERSION, **ctx.cfg.prior_settings()))
    s_base, s_new = float(np.mean(base)), float(np.mean(new))
    accepted = s_new - s_base > ctx.cfg.gate_threshold
    if accepted:  # the next step's base: the version these ops make scores as their preview did
        ctx.memo.put(f"gate:{ctx.cfg.library}:v{version + 1}:{slice_key(ctx)}", new)
    return {"accepted": accepted, "score_base": s_base, "score_new": s_new, "delta": s_new - s_base,
            "n_items": len(new), "base_version": version}


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
                          accepted=decision["accepted"], ops=ops)
