"""`tfgrpo eval` and `tfgrpo demo`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tasks.registry import get_task
from tfgrpo.cli_common import console, data_dir_option, guard, out
from tfgrpo.config import ModelConfig
from tfgrpo.errors import ConfigError
from tfgrpo.eval_run import EvalResult, run_eval
from tfgrpo.llm.factory import ModelPool


def print_metrics(m: dict, title: str = "evaluation") -> None:
    table = Table(title=title)
    for col in ("task", "model", "library", "items", "k", "mean@k", "95% CI", "pass@k", "format", "wall s"):
        table.add_column(col)
    lib = "none" if m.get("library") is None else f"{m['library']}@v{m.get('version')}"
    table.add_row(m["task"], m["model"], lib, str(m["n_items"]), str(m["k"]), f"{m['mean_at_k']:.3f}",
                  f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]", f"{m['pass_at_k']:.3f}", f"{m['format_rate']:.2f}",
                  f"{m['wall_s']:.1f}")
    out.print(table)


def evaluate(task_name: str, model_cfg: ModelConfig, *, k: int, split: str, limit: int | None, seed: int,
             temperature: float, max_tokens: int, apply_prior=None, library=None, version=None,
             pool: ModelPool | None = None, call_log=None) -> EvalResult:
    """Load the task, start the model, run the eval with a progress bar."""
    task = get_task(task_name)
    examples = task.examples(split)
    if limit:
        examples = examples[:limit]
    if not examples:
        raise ConfigError(f"task {task_name} has no items in split {split!r}")
    own = pool is None
    pool = pool or ModelPool(progress=lambda s: console.print(f"[dim]{s}[/]"))
    try:
        model = pool.gateway(model_cfg, call_log=call_log)
        cols = (TextColumn("[bold]eval[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn())
        with Progress(*cols, console=console, transient=True) as bar:
            tid = bar.add_task(f"{task_name} x{k}", total=len(examples))
            result = asyncio.run(run_eval(
                model, task, examples, k=k, seed=seed, temperature=temperature, max_tokens=max_tokens,
                apply_prior=apply_prior, on_item=lambda _: bar.advance(tid), library=library, version=version,
                split=split))
    finally:
        if own:
            pool.close()
    return result


@guard
def eval_cmd(
    task: str = typer.Option(..., "--task", "-t", help="Task name (gsm8k, math500, aime24, aime25, dapo, "
                                                       "hotpotqa, arith, jsonl)."),
    model: str = typer.Option("local", "--model", "-m", help="local | local:qwen0.5b | local:smollm2 | litellm name"),
    library: str = typer.Option("none", "--library", "-l", help="Experience library to inject, or `none`."),
    version: Optional[int] = typer.Option(None, "--version", help="Library version (default: latest)."),
    k: int = typer.Option(1, "--k", min=1, help="Samples per item."),
    split: str = typer.Option("test", "--split"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="First N items only."),
    seed: int = typer.Option(0, "--seed"),
    temperature: float = typer.Option(0.7, "--temperature", min=0.0, max=2.0),
    max_tokens: int = typer.Option(512, "--max-tokens", min=1),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write metrics and per-item results here."),
    api_base: Optional[str] = typer.Option(None, "--api-base"),
    gguf: Optional[str] = typer.Option(None, "--gguf", help="Serve this GGUF with the embedded server."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Dataset folder (default $TFGRPO_DATA)."),
    db: Optional[Path] = typer.Option(None, "--db", help="Store file (default $TFGRPO_HOME/tfgrpo.duckdb)."),
) -> None:
    """Evaluate a model (optionally with a learned library): mean@k, pass@k, 95% bootstrap CI."""
    data_dir_option(data_dir)
    cfg = ModelConfig(model=model, api_base=api_base, gguf=gguf)
    from tfgrpo.prior_cli import prior_for_eval

    with prior_for_eval(library, version, db) as (apply_prior, lib, ver, call_log, on_done):
        result = evaluate(task, cfg, k=k, split=split, limit=limit, seed=seed, temperature=temperature,
                          max_tokens=max_tokens, apply_prior=apply_prior, library=lib, version=ver,
                          call_log=call_log)
        on_done(result)
    print_metrics(result.metrics())
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        out.print(f"wrote {json_out}")


@guard
def demo_cmd(
    model: str = typer.Option("local", "--model", "-m"),
    quick: bool = typer.Option(False, "--quick", help="A smaller run (fewer items)."),
    db: Optional[Path] = typer.Option(None, "--db"),
) -> None:
    """End to end on the embedded model: learn on the built-in task, show what was learned, evaluate."""
    from tfgrpo.demo import run_demo

    run_demo(model=model, quick=quick, db=db)
