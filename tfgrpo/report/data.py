"""Collect what the HTML report shows from the experience store (read-only).

Everything here returns plain dicts and lists for the Jinja template and the plots; no HTML is built
here (the template escapes every text). `ReportData.collect` is the one entry point.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from experience_store import ExperienceStore
from experience_store.models import Experience, OpRecord, RolloutRow
from tfgrpo.errors import ConfigError

#: Longest rollout / raw learner text kept in the page (characters); the rest is cut with a note.
DEFAULT_MAX_CHARS = 4000
#: Characters of a rollout shown before it is expanded.
PREVIEW_CHARS = 160


def clip(text: str | None, limit: int) -> dict[str, Any]:
    """A long text as {preview, text, cut}: `cut` counts the characters left out of `text`."""
    text = text or ""
    flat = " ".join(text.split())
    preview = flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"
    return {"preview": preview, "text": text[:limit], "cut": max(0, len(text) - limit)}


def pick_run(store: ExperienceStore, library: str, run_id: str | None) -> dict[str, Any] | None:
    """The run the report is about: `run_id`, else the library's latest training run (else latest run)."""
    if run_id:
        run = store.get_run(run_id)
        if run.get("library") != library:
            raise ConfigError(
                f"run {run_id!r} belongs to library {run.get('library')!r}, not {library!r}; "
                f"pass --library {run.get('library')} or another --run (`tfgrpo runs` lists them)"
            )
        return run
    runs = store.list_runs(library)
    trains = [r for r in runs if r.get("kind") == "train"]
    return (trains or runs or [None])[-1]


def overview(run: dict[str, Any] | None) -> dict[str, Any] | None:
    """Run overview: models, key config values, status and totals."""
    if run is None:
        return None
    conf = run.get("config") or {}
    train = conf.get("train") or {}
    rollout = train.get("rollout") or {}
    policy = (conf.get("policy") or {}).get("model") or run.get("model")
    learner = (conf.get("learner") or {}).get("model") or policy
    settings = {k: train[k] for k in ("task", "split", "epochs", "batch_size", "group_size", "limit", "seed",
                                      "max_proposals", "max_words", "placement") if k in train}
    settings.update({f"rollout {k}": v for k, v in rollout.items()})
    wall, approx = (run.get("metrics") or {}).get("wall_s"), False
    if wall is None and run.get("created_at") and run.get("updated_at"):  # stopped before recording it
        wall, approx = (run["updated_at"] - run["created_at"]).total_seconds(), True
    return {
        "id": run["id"], "kind": run.get("kind"), "status": run.get("status"), "error": run.get("error"),
        "policy": policy, "learner": learner, "steps": run.get("steps"), "rollouts": run.get("rollouts"),
        "llm_calls": run.get("llm_calls"), "tokens": run.get("tokens"), "cost_usd": run.get("cost_usd") or 0.0,
        "wall_s": wall, "wall_approx": approx, "created_at": run.get("created_at"), "finished_at": run.get("finished_at"),
        "settings": settings, "config_json": json.dumps(conf, indent=2, ensure_ascii=False, default=str),
    }


def step_rewards(rows: list[RolloutRow]) -> list[dict[str, Any]]:
    """Per step: mean reward of all its rollouts and the mean of each group (question)."""
    by_step: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    epochs: dict[int, int] = {}
    for r in rows:
        by_step[r.step][r.question_id].append(r.reward)
        epochs[r.step] = r.epoch
    out = []
    for step in sorted(by_step):
        groups = by_step[step]
        rewards = [x for g in groups.values() for x in g]
        out.append({"step": step, "epoch": epochs[step], "mean": fmean(rewards),
                    "groups": [fmean(g) for g in groups.values()], "n": len(rewards)})
    return out


def version_ops(store: ExperienceStore, library: str, history: list[OpRecord]) -> list[dict[str, Any]]:
    """Per version from 0: library size and how many applied ops of each kind produced it."""
    counts: dict[int, Counter] = defaultdict(Counter)
    for rec in history:
        if rec.outcome == "applied":
            counts[rec.version][rec.kind.value] += 1
    out = [{"version": 0, "size": 0, "ops": {}}]
    for v in store.versions(library):
        v = v if isinstance(v, dict) else v.model_dump()  # dicts or `Version` models, as the store gives them
        out.append({"version": v["version"], "size": v["n_live"], "ops": dict(counts[v["version"]]),
                    "run_id": v.get("run_id"), "step": v.get("step")})
    return out


def stage_usage(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per LLM stage: calls, prompt and completion tokens, USD and mean latency."""
    acc: dict[str, dict[str, Any]] = {}
    for c in calls:
        s = acc.setdefault(c["stage"], {"stage": c["stage"], "calls": 0, "prompt": 0, "completion": 0,
                                        "usd": 0.0, "latency": 0.0})
        s["calls"] += 1
        s["prompt"] += c.get("prompt_tokens") or 0
        s["completion"] += c.get("completion_tokens") or 0
        s["usd"] += c.get("cost_usd") or 0.0
        s["latency"] += c.get("latency_s") or 0.0
    for s in acc.values():
        s["latency"] /= s["calls"]
    return sorted(acc.values(), key=lambda s: -(s["prompt"] + s["completion"]))


def library_evals(store: ExperienceStore, library: str, run_ids: set[str]) -> list[dict[str, Any]]:
    """Evals of this library, plus baselines (no library) from its runs or on the tasks it was evaluated on."""
    rows = store.evals()
    tasks = {e["task"] for e in rows if e["library"] == library}
    keep = [e for e in rows if e["library"] == library
            or (e["library"] is None and (e["run_id"] in run_ids or e["task"] in tasks))]
    out = []
    for e in keep:
        m = e["metrics"]
        base = e["library"] is None
        out.append({
            "label": "baseline" if base else f"{library} v{e['version']}", "baseline": base, "task": e["task"],
            "model": e["model"], "k": m.get("k"), "n": m.get("n_items"), "mean": m.get("mean_at_k"),
            "lo": m.get("ci_low"), "hi": m.get("ci_high"), "pass": m.get("pass_at_k"), "at": e.get("created_at"),
        })
    return [e for e in out if e["mean"] is not None]


@dataclass
class RolloutCache:
    """Rollouts by id, loaded one (run, step) at a time as provenance asks for them."""

    store: ExperienceStore
    max_chars: int
    loaded: dict[tuple[str, int], dict[str, RolloutRow]] = field(default_factory=dict)

    def get(self, run_id: str, step: int) -> dict[str, RolloutRow]:
        key = (run_id, step)
        if key not in self.loaded:
            self.loaded[key] = {r.id: r for r in self.store.rollouts(run_id, step)}
        return self.loaded[key]

    def evidence(self, rec: OpRecord) -> list[dict[str, Any]]:
        """The questions behind an op, each with its rollouts best first, marked winner / loser / tie."""
        p = rec.provenance
        if not p.run_id or p.step is None or not p.rollout_ids:
            return []
        rows = self.get(p.run_id, p.step)
        by_q: dict[str, list[RolloutRow]] = defaultdict(list)
        for rid in p.rollout_ids:
            if rid in rows:
                by_q[rows[rid].question_id].append(rows[rid])
        return [self._question(qid, group) for qid, group in by_q.items()]

    def _question(self, qid: str, group: list[RolloutRow]) -> dict[str, Any]:
        rewards = [r.reward for r in group]
        top, low = max(rewards), min(rewards)
        items = []
        for r in sorted(group, key=lambda r: -r.reward):
            label = "tie" if top == low else ("winner" if r.reward == top else "loser")
            body = (r.extra or {}).get("trajectory_text") or r.completion or (f"error: {r.error}" if r.error else "")
            items.append({"id": r.id, "reward": r.reward, "reason": r.reward_reason, "label": label,
                          "version": r.version, **clip(body, self.max_chars)})
        return {"question_id": qid, "question": group[0].question, "rollouts": items}


def op_view(rec: OpRecord, cache: RolloutCache) -> dict[str, Any]:
    """One op of an experience's history, with the evidence behind it."""
    p = rec.provenance
    return {
        "op_id": rec.op_id, "version": rec.version, "kind": rec.kind.value, "outcome": rec.outcome,
        "note": rec.note, "before": rec.before, "after": rec.after, "reason": rec.reason,
        "merge_ids": rec.merge_ids, "duplicate_of": rec.duplicate_of, "similarity": rec.similarity,
        "at": rec.created_at, "run_id": p.run_id, "step": p.step, "call_id": p.call_id,
        "questions": cache.evidence(rec),
    }


def touches(rec: OpRecord) -> set[int]:
    """Experience ids whose history shows this op (as target, merge member or matched duplicate)."""
    ids = set(rec.merge_ids)
    ids.update(x for x in (rec.exp_id, rec.duplicate_of) if x is not None)
    return ids


def experience_rows(store: ExperienceStore, library: str, history: list[OpRecord],
                    cache: RolloutCache) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(live, retired) experiences, each with its full op history; retired = deleted or merged away."""
    per_exp: dict[int, list[OpRecord]] = defaultdict(list)
    for rec in history:
        for exp_id in touches(rec):
            per_exp[exp_id].append(rec)
    live = store.experiences(library)
    live_ids = {e.id for e in live}
    retired = [store.get(library, i) for i in sorted(per_exp) if i not in live_ids]
    views: dict[int, dict[str, Any]] = {}

    def view(rec: OpRecord) -> dict[str, Any]:  # an op shown under several experiences is built once
        if rec.op_id not in views:
            views[rec.op_id] = op_view(rec, cache)
        return views[rec.op_id]

    def row(e: Experience) -> dict[str, Any]:
        return {**e.model_dump(), "history": [view(r) for r in per_exp.get(e.id, [])]}

    return [row(e) for e in live], [row(e) for e in retired]
