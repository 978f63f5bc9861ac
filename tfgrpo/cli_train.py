"""`tfgrpo train`: learn an experience library with Training-Free GRPO."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError
from rich.table import Table

from tfgrpo.budget import BudgetConfig
from tfgrpo.cli_common import console, data_dir_option, guard, out, validated
from tfgrpo.cli_eval import task_options
from tfgrpo.config import ModelConfig, SamplingConfig, TrainConfig
from tfgrpo.errors import ConfigError
from tfgrpo.llm.factory import check_model_name
from tfgrpo.prior_cli import open_store


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
    task: str = typer.Option(..., "--task", "-t"),
    model: str = typer.Option("local", "--model", "-m", help="Policy model."),
    library: str = typer.Option("default", "--library", "-l"),
    epochs: int = typer.Option(3, "--epochs"),
    batch_size: int = typer.Option(4, "--batch-size", help="Questions per step (B)."),
    group_size: int = typer.Option(5, "--group-size", help="Rollouts per question (G)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="First N training questions only."),
    learner_model: Optional[str] = typer.Option(None, "--learner-model", help="Learner model (default: --model)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed (a non-negative integer)."),
    temperature: float = typer.Option(0.7, "--temperature", help="Rollout temperature."),
    max_tokens: int = typer.Option(512, "--max-tokens", help="Rollout max tokens."),
    budget_usd: Optional[float] = typer.Option(None, "--budget-usd"),
    max_calls: Optional[int] = typer.Option(None, "--max-calls"),
    max_total_tokens: Optional[int] = typer.Option(None, "--max-tokens-total"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print estimated calls/tokens/USD and exit."),
    resume: bool = typer.Option(False, "--resume", help="Continue the latest unfinished run of the library."),
    no_ground_truth: bool = typer.Option(False, "--no-ground-truth", help="Majority-vote rewards; no gold labels."),
    allow_group_of_one: bool = typer.Option(False, "--allow-group-of-one"),
    no_all_wrong: bool = typer.Option(False, "--no-all-wrong", help="Skip all-wrong groups."),
    agent: Optional[str] = typer.Option(None, "--agent", help="`react`: tool-using rollouts (ReAct agent)."),
    max_turns: int = typer.Option(5, "--max-turns", min=1, help="Agent mode: max model turns."),
    data_file: Optional[Path] = typer.Option(None, "--data-file", help="Task jsonl: your JSONL file."),
    reward: Optional[str] = typer.Option(None, "--reward", help="jsonl: exact|numeric|math|regex; hotpotqa: f1|em."),
    api_base: Optional[str] = typer.Option(None, "--api-base"),
    gguf: Optional[str] = typer.Option(None, "--gguf"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir"),
    db: Optional[Path] = typer.Option(None, "--db"),
) -> None:
    """Learn an experience library (Training-Free GRPO)."""
    data_dir_option(data_dir)
    check_model_name(model)
    cfg = build_config(
        task=task, library=library, epochs=epochs, batch_size=batch_size, group_size=group_size, limit=limit,
        seed=seed, rollout=SamplingConfig(temperature=temperature, max_tokens=max_tokens),
        budget=_budget(budget_usd, max_calls, max_total_tokens), ground_truth=not no_ground_truth,
        allow_group_of_one=allow_group_of_one, learn_all_wrong=not no_all_wrong,
        task_options=task_options(agent, max_turns, data_file, reward))
    policy = ModelConfig(model=model, api_base=api_base, gguf=gguf)
    learner = ModelConfig(model=learner_model, api_base=api_base) if learner_model else None
    from tfgrpo.train import estimate, train

    if dry_run:
        out.print_json(json.dumps(estimate(cfg, policy)))
        return
    store = open_store(db)
    try:
        from experience_store.paths import default_db_path

        res = train(cfg, policy, learner, store=store, db=Path(db) if db else default_db_path(), resume=resume,
                    on_stage=lambda st, step, msg: console.print(f"[cyan]step {step + 1}[/] [bold]{st}[/] {msg}"),
                    progress=lambda s: console.print(f"[dim]{s}[/]"))
        summary_table(store, res.run_id)
    finally:
        store.close()
    if res.status != "completed":
        console.print(f"[yellow]run {res.run_id} {res.status}: {res.error}[/]")
        raise typer.Exit(3 if res.status == "stopped_budget" else 1)


def _budget(usd, calls, tokens) -> BudgetConfig:
    try:
        return BudgetConfig(max_usd=usd, max_calls=calls, max_tokens=tokens)
    except ValidationError:
        raise ConfigError("budgets must be >= 0 (omit the option for no cap)") from None
