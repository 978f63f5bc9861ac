"""The arms that learn before they are evaluated: a Training-Free GRPO library, trained once per benchmark
and settings, exported with a sidecar of what it cost; GEPA's best system prompt likewise. When the export
exists, a rerun imports it into the bench's own DuckDB file instead of training again, so anyone can
evaluate the committed library. A training interrupted (killed, or stopped by the time budget at a stage
boundary) resumes from its checkpoint on the next run."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.learning_arms import PRIOR_SETTINGS, Arm, train_overrides

STOPPED = "stopped"
POLICY_STAGES = ("rollout", "eval", "gate")  # the policy's calls in training; the other stages are the learner's


class TimeBudgetReached(Exception):
    """Raised at a training stage boundary when the session's time budget is spent (the run resumes later)."""


def leaked_numbers(experiences: list[str], test_questions: list[str], min_digits: int = 3) -> list[str]:
    """Experiences that contain a number of >= `min_digits` digits appearing verbatim in a test question."""
    test_nums = {n for q in test_questions for n in re.findall(r"\d[\d,]*", q) if len(n.replace(",", "")) >= min_digits}
    return [e for e in experiences if any(n in e for n in re.findall(r"\d[\d,]*", e) if n in test_nums)]


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def import_library(store, arm: str, path: Path) -> str:
    """The exported library as `<arm>.import-<file sha>` in the bench's store (imported once, rows as they are)."""
    from experience_store.io import import_file

    lib = f"{arm}.import-{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
    if lib in store.libraries():
        return lib
    store.ensure_library(lib)
    if path.read_text(encoding="utf-8").strip():  # a library that learned nothing exports as an empty file
        import_file(store, lib, path, "jsonl", dedup=False)
    return lib


def train_config(arm: Arm, s: dict[str, Any], task_name: str):
    """The arm's TrainConfig: the first `n_train` questions of the split; with a gate, the loop holds out the
    split's last `gate_items` questions (the bench's gate items, see learning_setup.select_items)."""
    from tfgrpo.config import SamplingConfig, TrainConfig

    extra = train_overrides(arm, TrainConfig.model_fields, s)
    return TrainConfig(task=task_name, library=f"train-{arm.name}", epochs=s["epochs"], batch_size=s["batch"],
                       group_size=s["group"], limit=s["n_train"], seed=s["seed"], split=s["train_split"],
                       rollout=SamplingConfig(temperature=s["rollout_temperature"], max_tokens=s["max_tokens"]),
                       **extra)


def gate_log(store, library: str, run_id: str) -> list[dict[str, Any]]:
    """The gate's decision at each step (scores of the base and the proposed library on the held-out slice,
    and the ops it let through or turned away), so a reader of the export sees what was kept and why."""
    out = []
    for d in store.gate_decisions(library, run_id):
        out.append({"step": d["step"] + 1, "accepted": bool(d["accepted"]), "base_version": d["base_version"],
                    "new_version": d["new_version"], "n_items": d["n_items"],
                    "slice_items": d["slice_items"],
                    "score_base": round(float(d["score_base"]), 4), "score_new": round(float(d["score_new"]), 4),
                    **({"gained": d["gained"], "lost": d["lost"], "p_value": round(float(d["p_value"]), 4),
                        "alpha": d["alpha"]} if d.get("p_value") is not None else {}),
                    "ops": [{"kind": o.get("kind"), "exp_kind": o.get("exp_kind"), "target_id": o.get("target_id"),
                             "text": o.get("text")} for o in d["ops"]]})
    return out


def train_stats(store, run_id: str) -> dict[str, Any]:
    run = store.get_run(run_id)
    calls = store.calls(run_id=run_id)
    by_stage = dict(Counter(c["stage"] for c in calls))
    return {"run_id": run_id, "status": run["status"], "llm_calls": run["llm_calls"], "by_stage": by_stage,
            "rollouts": by_stage.get("rollout", 0),
            "learner_calls": sum(v for k, v in by_stage.items() if k not in POLICY_STAGES),
            "prompt_tokens": sum(c["prompt_tokens"] or 0 for c in calls),
            "completion_tokens": sum(c["completion_tokens"] or 0 for c in calls),
            "wall_s": float((run.get("metrics") or {}).get("wall_s", 0.0))}


def _stage_printer(name: str, deadline: float | None):
    def on_stage(stage: str, step: int, msg: str) -> None:
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeBudgetReached(f"time budget reached before {stage} of step {step + 1}")
        print(f"  [{name}] step {step + 1} {stage}: {msg}", flush=True)
    return on_stage


class TrainingEnded(RuntimeError):
    """A training stopped for a reason other than the time budget (the model unreachable, the budget spent):
    its state stays in the scratch folder (and is packed for the next session), and the bench stops."""


def _run_training(ctx, arm: Arm):
    """Train (or resume) the arm's library; returns (library, run_id) or STOPPED."""
    from tfgrpo.config import ModelConfig
    from tfgrpo.loop.run import train

    cfg = train_config(arm, ctx.s, ctx.items.train_task.name)
    store, lib = ctx.store, cfg.library
    resume = lib in store.libraries() and store.latest_unfinished_run(lib, "train") is not None
    finished = [r for r in store.list_runs(lib) if r.get("finished_at")] if lib in store.libraries() else []
    if finished and not resume:  # trained before the export was written: export it now
        return lib, finished[-1]["id"]
    print(f"[{arm.name}] {'resuming' if resume else 'training'} {lib}: {cfg.limit} questions, G={cfg.group_size}, "
          f"{cfg.epochs} epoch(s)", flush=True)
    res = train(cfg, ModelConfig(model=ctx.s["model"]), None, store=store, db=ctx.db, pool=ctx.pool, resume=resume,
                on_stage=_stage_printer(arm.name, ctx.deadline))
    if res.status == "completed":
        return lib, res.run_id
    if "TimeBudgetReached" in (res.error or "") or res.status == "interrupted":
        print(f"[{arm.name}] training stopped ({res.error}); the next run resumes it", flush=True)
        return STOPPED
    raise TrainingEnded(f"training {lib} ended {res.status}: {res.error}")


def prepare_library(ctx, arm: Arm) -> str:
    """The arm's library in the bench store (imported from its export, trained first if there is none),
    or STOPPED when the time budget ran out during training."""
    from experience_store.io import export_text

    lib_file, meta_file = ctx.out / f"{arm.name}.library.jsonl", ctx.out / arm.train_file
    if lib_file.is_file() and meta_file.is_file():
        print(f"[{arm.name}] importing {lib_file}", flush=True)
        return import_library(ctx.store, arm.name, lib_file)
    got = _run_training(ctx, arm)
    if got == STOPPED:
        return STOPPED
    lib, run_id = got
    cfg = ctx.store.get_run(run_id)["config"]["train"]
    texts = [e.text for e in ctx.store.experiences(lib)]
    lib_file.write_text(export_text(ctx.store, lib, "jsonl"), encoding="utf-8")
    write_json(meta_file, {"arm": arm.name, "label": arm.label, "train_config": cfg, "prior": dict(PRIOR_SETTINGS),
                           "model": ctx.s["model"], "model_sha256": ctx.s["model_sha256"],
                           "experiences": len(texts), "machine": ctx.machine,
                           "leaked_test_numbers": len(leaked_numbers(texts, [e.question for e in ctx.items.test])),
                           "written_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                           "gate": gate_log(ctx.store, lib, run_id), **train_stats(ctx.store, run_id)})
    print(f"[{arm.name}] wrote {lib_file} ({len(texts)} experiences) and {meta_file}", flush=True)
    return import_library(ctx.store, arm.name, lib_file)


def planned_rollouts(s: dict[str, Any]) -> int:
    """The paper arm's rollout count: every training question, G times, every epoch."""
    return s["n_train"] * s["group"] * s["epochs"]


def prepare_gepa(ctx) -> dict[str, Any] | str | None:
    """GEPA's result (from gepa.train.json, or optimized now and written there); STOPPED when the time
    budget ran out (its state in the scratch folder resumes); None when gepa is not installed."""
    from bench.gepa_side import run_gepa

    meta_file = ctx.out / "gepa.train.json"
    if meta_file.is_file():
        return json.loads(meta_file.read_text(encoding="utf-8"))
    run_dir = ctx.scratch / "gepa-run"
    wall_file = ctx.scratch / "gepa-wall_s.txt"  # wall of earlier sessions of a resumed optimization
    before = float(wall_file.read_text()) if wall_file.is_file() else 0.0
    start = time.perf_counter()
    try:
        res = run_gepa(ctx.gepa_model(), ctx.items.train_task, ctx.items.train,
                       max_metric_calls=planned_rollouts(ctx.s), seed=ctx.s["seed"], max_tokens=ctx.s["max_tokens"],
                       run_dir=run_dir, deadline=ctx.deadline)
    except KeyboardInterrupt:  # Ctrl-C: the time spent still counts in the optimization's wall
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        wall_file.write_text(str(before + time.perf_counter() - start))
        raise
    if res is None:
        return None
    res["wall_s"] += before
    if not res.pop("complete"):
        wall_file.write_text(str(res["wall_s"]))
        return STOPPED
    stages = Counter(c["stage"] for c in ctx.store.calls() if str(c["stage"]).startswith("gepa"))
    res.update({"by_stage": dict(stages), "llm_calls": sum(stages.values()),
                "learner_calls": stages.get("gepa_reflect", 0), "model": ctx.s["model"],
                "model_sha256": ctx.s["model_sha256"], "machine": ctx.machine,
                "written_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())})
    write_json(meta_file, res)
    print(f"[gepa] wrote {meta_file}", flush=True)
    return res
