"""Pruning by evidence: propose deleting the experience that did worst in the prompts of mixed groups.

Each experience counts how often it was in the prompt of a usable rollout of a mixed group, and how often
that rollout won (`loop.commit._bump`). Once at least two experiences have been in `min_seen` such prompts,
the one with the lowest smoothed win rate, (won + 1) / (seen + 2), that the gate never credited, is proposed
for DELETE with the step's other ops. The evidence only picks the candidate: in `all` mode every lesson is in
every prompt while it is live, so its win rate also reflects when it was in the library. Whether the deletion
stays is the gate's call, like any op (which is why pruning needs the gate)."""

from __future__ import annotations

from experience_store import Experience, Op, OpKind, Provenance
from tfgrpo.prior import win_rate


def prune_op(experiences: list[Experience], ops: list[Op], *, min_seen: int, run_id: str,
             step: int) -> Op | None:
    """The DELETE to add to a step's `ops`, or None (off, too little evidence, or every candidate touched)."""
    if min_seen <= 0:
        return None
    seen = [e for e in experiences if (e.times_injected or 0) >= min_seen]
    if len(seen) < 2:  # "lowest" needs something to be lower than
        return None
    touched = {i for op in ops for i in op.ids_touched()}
    candidates = [e for e in seen if (e.gate_delta or 0.0) <= 0.0 and e.id not in touched]
    if not candidates:
        return None
    worst = min(candidates, key=lambda e: (win_rate(e), e.id))
    others = [win_rate(e) for e in seen if e.id != worst.id]
    if win_rate(worst) >= min(others):  # a tie with the rest says nothing against it
        return None
    return Op(kind=OpKind.DELETE, target_id=worst.id,
              reason=f"evidence: in {worst.times_injected} prompts of mixed groups, {worst.times_won} won "
                     f"(win rate {win_rate(worst):.2f} smoothed, the lowest; others {min(others):.2f}-"
                     f"{max(others):.2f}); no gate credit",
              provenance=Provenance(run_id=run_id, step=step))
