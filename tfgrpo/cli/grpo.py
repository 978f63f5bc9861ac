"""`tfgrpo grpo`: weight-update GRPO (TRL) on a task's own reward."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError
from rich.table import Table

from tfgrpo.cli import options as o
from tfgrpo.cli.common import console, data_dir_option, guard, out
from tfgrpo.errors import ConfigError


def _config(**values):
    from tfgrpo.grpo.config import GrpoConfig

    try:
        return GrpoConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ConfigError(f"--{where.replace('_', '-')}: {first.get('msg')}") from None


def print_outcome(outcome) -> None:
    m = outcome.meta
    table = Table(title="grpo")
    for col in ("task", "model", "steps", "completions", "mean reward", "s/step", "train s", "device", "weights"):
        table.add_column(col)
    step = f"{m.step_s:.1f}" if m.step_s is not None else "-"
    table.add_row(m.task, m.base.name, str(m.steps), str(m.completions),
                  f"{m.reward_stats.get('mean_reward', 0.0):.3f}", step, f"{m.train_s:.1f}",
                  m.device_name or m.device, f"{m.weights}{' (lora)' if m.lora else ''}")
    out.print(table)
    out.print(f"checkpoint: {outcome.checkpoint}  (evaluate: tfgrpo eval --checkpoint {outcome.checkpoint}; "
              f"compare: tfgrpo compare --checkpoint {outcome.checkpoint})")


@guard
def cmd(
    task: str = typer.Option(..., "--task", "-t", help="Task name; its reward function is the GRPO reward."),
    model: str = typer.Option(..., "--model", "-m", help="local | local:qwen0.5b | local:smollm2 (GGUF via "
                                                         "transformers), a model folder, or a HF name."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Output folder (checkpoint, metrics, metadata)."),
    max_steps: int = typer.Option(100, "--max-steps", min=1, max=o.MAX_COUNT, help="Optimizer steps."),
    group_size: int = typer.Option(8, "--group-size", "-G", min=2, max=o.MAX_COUNT, help="Completions per prompt (G)."),
    batch_size: int = typer.Option(4, "--batch-size", "-B", min=1, max=o.MAX_COUNT, help="Prompts per step (B)."),
    lr: Optional[float] = typer.Option(None, "--lr", min=0.0, max=1.0, help="Learning rate (default 2e-6; 5e-5 with --lora)."),
    max_completion_length: int = typer.Option(256, "--max-completion-length", min=1, max=o.MAX_COUNT, help="Max new tokens."),
    temperature: float = typer.Option(1.0, "--temperature", min=0.0, max=2.0, help="Rollout sampling temperature."),
    beta: float = typer.Option(0.0, "--beta", min=0.0, help="KL coefficient (0 = no reference model)."),
    lora: bool = typer.Option(False, "--lora/--full", help="Train a LoRA adapter (peft) or all weights."),
    lora_r: int = typer.Option(16, "--lora-r", min=1, max=o.MAX_COUNT),
    seed: int = typer.Option(0, "--seed", min=0, max=o.MAX_SEED, help="Random seed (a non-negative integer)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, max=o.MAX_COUNT, help="First N training questions only."),
    split: str = typer.Option("train", "--split"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, max=o.MAX_COUNT, help="CPU threads for torch (1 is fastest "
                                                                         "on a busy machine)."),
    gguf: Optional[str] = typer.Option(None, "--gguf", help="Train from this GGUF file."),
    save: bool = typer.Option(True, "--save/--no-save", help="Save the trained weights."),
    record: bool = typer.Option(True, "--record/--no-record", help="Record a run row in the store."),
    data_file: Optional[Path] = typer.Option(None, "--data-file", help="Task jsonl: the JSONL file or folder."),
    reward: Optional[str] = typer.Option(None, "--reward", help="Reward kind (jsonl: exact|numeric|math|regex; "
                                                                "hotpotqa: f1|em)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Dataset folder (default $TFGRPO_DATA)."),
    db: Optional[Path] = typer.Option(None, "--db", help="Store file (default $TFGRPO_HOME/tfgrpo.duckdb)."),
) -> None:
    """Weight-update GRPO with TRL on the task's own reward; writes a checkpoint and a run row."""
    data_dir_option(data_dir)
    cfg = _config(task=task, model=model, out=str(out_dir), max_steps=max_steps, group_size=group_size,
                  batch_size=batch_size, lr=lr, max_completion_length=max_completion_length,
                  temperature=temperature, beta=beta, lora=lora, lora_r=lora_r, lora_alpha=2 * lora_r, seed=seed,
                  limit=limit, split=split, device=device, threads=threads, gguf=gguf, save=save,
                  data_file=str(data_file) if data_file else None, reward=reward)
    from tfgrpo.grpo.loading import require_grpo_extra
    from tfgrpo.grpo.run import run_grpo

    require_grpo_extra()
    outcome = run_grpo(cfg, db=db, record=record, progress=lambda s: console.print(f"[dim]{s}[/]"))
    print_outcome(outcome)


if __name__ == "__main__":  # `python -m tfgrpo.cli.grpo ...` where the full CLI's dependencies are absent
    typer.run(cmd)
