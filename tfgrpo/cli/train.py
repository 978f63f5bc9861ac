"""`tfgrpo train`: learn an experience library with Training-Free GRPO."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.table import Table

from experience_store import open_store
from experience_store.location import is_postgres_url
from experience_store.open import store_location
from experience_store.reads import check_library_name
from tfgrpo.cli import options as o
from tfgrpo.cli.common import console, data_dir_option, guard, out, validated
from tfgrpo.cli.eval import task_options
from tfgrpo.config import ModelConfig, SamplingConfig, TrainConfig
from tfgrpo.errors import ConfigError, StoreError
from tfgrpo.llm.budget import BudgetConfig
from tfgrpo.llm.config import from_stored
from tfgrpo.llm.factory import ModelPool, check_model_name
from tfgrpo.llm.preflight import preflight


def build_config(**kw) -> TrainConfig:
    return validated(TrainConfig, **kw)


def summary_table(store, run_id: str) -> Table:
    """End-of-run table: per epoch rollouts and mean reward, ops, tokens, USD, wall time."""
    run = store.get_run(run_id)
    rows = store.rollouts(run_id)
    table = Table(title=f"run {run_id} — {run['status']}")
    for col in ("epoch", "rollouts", "mean reward"):
        table.add_column(col)
    for epoch in sorted({r.epoch for r in rows}):
        rs = [r.reward for r in rows if r.epoch == epoch]
        table.add_row(str(epoch + 1), str(len(rs)), f"{sum(rs) / len(rs):.3f}")
    hist = [h for h in store.history(run["library"]) if h.provenance.run_id == run_id]
    applied = sum(1 for h in hist if h.outcome == "applied")
    out.print(table)
    out.print(f"steps {run.get('steps')}  ops applied {applied}, rejected {len(hist) - applied}  "
              f"learner outputs rejected {len(store.rejections(run_id))}  llm calls {run.get('llm_calls')}  "
              f"tokens {run.get('tokens')}  USD {float(run.get('cost_usd') or 0):.4f}  "
              f"wall {float((run.get('metrics') or {}).get('wall_s') or 0):.1f}s")
    return table


@guard
def train_cmd(
    task: o.Task,
    model: o.PolicyModel = "local",
    library: o.TrainLibrary = "default",
    epochs: o.Epochs = 3,
    batch_size: o.BatchSize = 4,
    group_size: o.GroupSize = 5,
    limit: o.Limit = None,
    learner_model: o.LearnerModel = None,
    seed: o.Seed = 0,
    temperature: o.Temperature = 0.7,
    max_tokens: o.MaxTokens = 512,
    budget_usd: o.BudgetUsd = None,
    max_calls: o.MaxCalls = None,
    max_total_tokens: o.MaxTokensTotal = None,
    dry_run: o.DryRun = False,
    resume: o.Resume = False,
    mlflow: o.Mlflow = False,
    mlflow_uri: o.MlflowUri = None,
    no_ground_truth: o.NoGroundTruth = False,
    allow_group_of_one: o.AllowGroupOfOne = False,
    no_all_wrong: o.NoAllWrong = False,
    gate_items: o.GateItems = 32,
    gate_threshold: o.GateThreshold = 0.0,
    gate_alpha: o.GateAlpha = 0.1,
    prune_after: o.PruneAfter = 0,
    lessons: o.Lessons = True,
    examples: o.Examples = True,
    prior_examples: o.PriorExamples = 2,
    learner_api_base: o.LearnerApiBase = None,
    agent: o.Agent = None,
    max_turns: o.MaxTurns = 5,
    data_file: o.DataFile = None,
    reward: o.Reward = None,
    sandbox: o.Sandbox = "bwrap",
    api_base: o.ApiBase = None,
    gguf: o.Gguf = None,
    data_dir: o.DataDir = None,
    db: o.Db = None,
) -> None:
    """Learn an experience library (Training-Free GRPO)."""
    data_dir_option(data_dir)
    check_model_name(model)
    cfg = build_config(
        task=task, library=library, epochs=epochs, batch_size=batch_size, group_size=group_size, limit=limit,
        seed=seed, rollout=SamplingConfig(temperature=temperature, max_tokens=max_tokens),
        budget=_budget(budget_usd, max_calls, max_total_tokens), ground_truth=not no_ground_truth,
        allow_group_of_one=allow_group_of_one, learn_all_wrong=not no_all_wrong, gate_items=gate_items,
        gate_threshold=gate_threshold, gate_alpha=gate_alpha, prune_after=prune_after, learn_lessons=lessons,
        learn_examples=examples,
        prior_examples=prior_examples, task_options=task_options(agent, max_turns, data_file, reward, sandbox))
    policy = ModelConfig(model=model, api_base=api_base, gguf=gguf)
    # the learner has its own endpoint: a local policy's --api-base is not where a hosted learner lives
    learner = ModelConfig(model=learner_model, api_base=learner_api_base) if learner_model else None
    tracker = _tracker(mlflow, mlflow_uri) if not dry_run else None
    _run(cfg, policy, learner, db=db, resume=resume, dry_run=dry_run, tracker=tracker)


def _tracker(mlflow: bool, uri: str | None):
    """The MLflow tracker for --mlflow (a missing mlflow package is refused here, before anything runs)."""
    if not mlflow:
        if uri:
            raise ConfigError("--mlflow-uri is for --mlflow: add --mlflow to track the run")
        return None
    import os

    from tfgrpo.loop.tracking import MlflowTracker

    return MlflowTracker(uri or os.environ.get("MLFLOW_TRACKING_URI"))


def _run(cfg: TrainConfig, policy: ModelConfig, learner: ModelConfig | None, *, db: str | None, resume: bool,
         dry_run: bool, tracker=None) -> None:
    from tfgrpo.loop.run import estimate, train

    if dry_run:
        out.print_json(json.dumps(estimate(cfg, policy)))
        return
    db_path = store_location(db)  # a file path, or a postgresql:// URL
    with ModelPool(progress=lambda s: console.print(f"[dim]{s}[/]")) as pool:
        if resume:  # the run's own task and models are checked; nothing is written before that
            policy, learner = _check_resume(cfg, db_path, pool)
        else:
            check_before_writing(cfg, policy, learner, pool)
        store = open_store(db_path)
        try:
            res = train(cfg, policy, learner, store=store, db=db_path, resume=resume, pool=pool,
                        on_stage=lambda st, step, msg: console.print(f"[cyan]step {step + 1}[/] [bold]{st}[/] {msg}"),
                        progress=lambda s: console.print(f"[dim]{s}[/]"), tracker=tracker)
            summary_table(store, res.run_id)
        finally:
            store.close()
    if tracker is not None:
        _finish_tracking(tracker, res, db_path, cfg.library)
    if res.status != "completed":
        console.print(f"[yellow]run {res.run_id} {res.status}: {res.error}[/]")
        raise typer.Exit(3 if res.status == "stopped_budget" else 1)


def _finish_tracking(tracker, res, db_path: Path | str, library: str) -> None:
    """Attach the final library and the run's report to the MLflow run and close it."""
    import tempfile

    from experience_store.io import export_text
    from tfgrpo.report.build import write_report

    with open_store(db_path, read_only=True) as store:
        export = export_text(store, library, "jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.html"
        write_report(db_path, library, report, run_id=res.run_id)
        tracker.finish(res.status, library_export=export, report=report)
    console.print(f"[dim]mlflow: run {tracker.run_id} at {tracker.uri}[/]")


def check_before_writing(cfg: TrainConfig, policy: ModelConfig, learner: ModelConfig | None, pool: ModelPool) -> None:
    """Everything a run needs, checked before the store (or its file) is touched: the library name, the
    task and its data (and agent mode's sandbox), then the models (provider key, one 1-token probe)."""
    from tfgrpo.loop.run import load_examples

    check_library_name(cfg.library)
    load_examples(cfg)
    preflight_models(policy, learner, pool)


def preflight_models(policy: ModelConfig, learner: ModelConfig | None, pool: ModelPool) -> None:
    seconds = preflight(policy, pool=pool, role="policy model")
    if learner is not None and learner != policy:
        preflight(learner, pool=pool, role="learner model")
    if seconds is not None:
        console.print(f"[dim]pre-flight: {policy.model} answered in {seconds:.1f}s[/]")


def _check_resume(cfg: TrainConfig, db_path: Path | str, pool: ModelPool) -> tuple[ModelConfig, ModelConfig]:
    """`--resume`: the store and an unfinished run must exist; its task and models are checked."""
    from tfgrpo.loop.run import load_examples

    check_library_name(cfg.library)
    if not is_postgres_url(db_path) and not Path(db_path).exists():
        raise StoreError(f"nothing to resume: there is no store at {db_path}; start a run without --resume")
    with open_store(db_path, read_only=True) as store:
        run = store.latest_unfinished_run(cfg.library, "train")
    if run is None:
        raise StoreError(f"library {cfg.library!r} has no unfinished training run to resume; "
                         "start one without --resume")
    conf = run["config"]
    policy, learner = from_stored(conf["policy"]), from_stored(conf["learner"])
    load_examples(TrainConfig.model_validate(conf["train"]))
    preflight_models(policy, learner, pool)
    return policy, learner


def _budget(usd, calls, tokens) -> BudgetConfig:
    try:
        return BudgetConfig(max_usd=usd, max_calls=calls, max_tokens=tokens)
    except ValidationError:
        raise ConfigError("budgets must be >= 0 (omit the option for no cap)") from None
