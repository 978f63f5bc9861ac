"""Consolidate a batch of proposals against the current library into ops (one learner call), validate,
and hand back store ops with full provenance. Invalid output is retried, then recorded as rejected."""

from __future__ import annotations

import json
from typing import Any

from experience_store import Op, OpKind, Provenance
from tfgrpo.loop.learner_call import Reject, ask_learner
from tfgrpo.loop.learner_parse import OpIn, parse_ops
from tfgrpo_common.chat import ChatModel
from tfgrpo.loop.memo import Memo
from tfgrpo.loop.prompts import render


def _provenance(run_id: str, step: int, props: list[dict], cited: list[int], call_id: str | None) -> Provenance:
    src = [props[i - 1] for i in cited] if cited else props
    groups = sorted({p["question_id"] for p in src})
    rollouts = sorted({rid for p in src for rid in p["rollout_ids"]})
    return Provenance(run_id=run_id, step=step, group_id=",".join(groups), rollout_ids=rollouts, call_id=call_id)


def to_store_ops(ops: list[OpIn], props: list[dict], run_id: str, step: int, call_id: str | None) -> list[Op]:
    out: list[Op] = []
    for o in ops:
        if o.op == "NONE":
            continue
        prov = _provenance(run_id, step, props, o.from_, call_id)
        reason = o.reason or "consolidation"
        if o.op == "ADD":
            out.append(Op(kind=OpKind.ADD, text=o.text, reason=reason, provenance=prov))
        elif o.op == "UPDATE":
            out.append(Op(kind=OpKind.UPDATE, target_id=o.id, text=o.text, reason=reason, provenance=prov))
        elif o.op == "DELETE":
            out.append(Op(kind=OpKind.DELETE, target_id=o.id, reason=reason, provenance=prov))
        elif o.op == "MERGE":
            out.append(Op(kind=OpKind.MERGE, merge_ids=o.ids, text=o.text, reason=reason, provenance=prov))
    return out


def fallback_adds(props: list[dict], run_id: str, step: int) -> list[Op]:
    """When consolidation output is unusable, each validated proposal is applied as it is: an ADD (the store
    dedups), or the UPDATE of the lesson it was proposed to revise."""
    reason = "consolidation rejected; proposal applied as is"
    return [Op(kind=OpKind.UPDATE, target_id=p["revises"], text=p["text"], reason=reason,
               provenance=_provenance(run_id, step, [p], [], p.get("call_id"))) if p.get("revises") else
            Op(kind=OpKind.ADD, text=p["text"], reason=reason,
               provenance=_provenance(run_id, step, [p], [], p.get("call_id"))) for p in props]


async def consolidate(model: ChatModel, library: list[Any], props: list[dict], *, run_id: str, step: int,
                      max_words: int, max_size: int, retries: int, temperature: float, max_tokens: int,
                      memo: Memo, seed: int, reject: Reject, fallback: bool = True) -> dict[str, Any]:
    """Return {"ops": [Op...], "status": "ok"|"fallback"|"rejected"|"empty", "error": str|None}. Ops are
    validated one by one (the valid ones kept, the others recorded as refused); only when the whole output
    stays unusable after the retries, and `fallback` is on, are the proposals added as they are."""
    key = f"{run_id}:{step}:consolidate"
    cached = memo.get(key)
    if cached is None:
        cached = await _consolidate_call(model, library, props, run_id=run_id, step=step, max_words=max_words,
                                         max_size=max_size, retries=retries, temperature=temperature,
                                         max_tokens=max_tokens, seed=seed, reject=reject)
        memo.put(key, cached)
    if cached["status"] == "ok":
        ops = to_store_ops([OpIn.model_validate(o) for o in cached["ops"]], props, run_id, step,
                           cached["call_id"])
    elif fallback and props:
        ops, cached = fallback_adds(props, run_id, step), {**cached, "status": "fallback"}
    else:
        ops = []
    return {"ops": ops, "status": cached["status"], "error": cached.get("error")}


async def _consolidate_call(model, library, props, *, run_id, step, max_words, max_size, retries, temperature,
                            max_tokens, seed, reject) -> dict[str, Any]:
    if not props:
        return {"ops": [], "status": "empty", "call_id": None, "error": None}
    live = {e.id for e in library}
    prompt = render("consolidate", library=library, proposals=props, max_words=max_words,
                    max_size=max_size)
    ans = await ask_learner(
        model, prompt,
        lambda text, finish: parse_ops(text, finish, live_ids=live, n_proposals=len(props), max_words=max_words),
        stage="consolidate", retries=retries, temperature=temperature, max_tokens=max_tokens, seed=seed,
        reject=reject, meta={"step": step})
    if ans.value is None:
        return {"ops": [], "status": "rejected", "call_id": None, "error": ans.error}
    for op, reason in ans.value.refused:  # the valid ops stand; each refused one is recorded with its reason
        reject("consolidate", f"op refused: {reason}", json.dumps(op.model_dump(by_alias=True), ensure_ascii=False))
    return {"ops": [o.model_dump(by_alias=True) for o in ans.value.ops], "status": "ok", "call_id": ans.call_id,
            "error": None, "refused": len(ans.value.refused)}
