"""`tfgrpo eval`: evaluate a model, with a learned library or none, on a task's items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tfgrpo.cli import options as o
from tfgrpo.cli.common import console, data_dir_option, guard, out
from tfgrpo.config import ModelConfig, TaskOptions
from tfgrpo.errors import ConfigError
from tfgrpo.evaluation.runner import EvalResult
from tfgrpo.evaluation.task_eval import evaluate_task
from tfgrpo.llm.factory import ModelPool, check_model_name
from tfgrpo.llm.preflight import preflight


def print_metrics(m: dict, title: str = "evaluation") -> None:
    table = Table(title=title)
    for col in ("task", "model", "library", "items", "k", "mean@k", "95% CI", "pass@k", "format", "wall s"):
        table.add_column(col)
    lib = "none" if m.get("library") is None else f"{m['library']}@v{m.get('version')}"
    table.add_row(m["task"], m["model"], lib, str(m["n_items"]), str(m["k"]), f"{m['mean_at_k']:.3f}",
                  f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]", f"{m['pass_at_k']:.3f}", f"{m['format_rate']:.2f}",
                  f"{m['wall_s']:.1f}")
    out.print(table)
    if "avg_tool_calls" in m:
        out.print(f"agent: {m['avg_tool_calls']:.2f} tool calls and {m['avg_turns']:.2f} turns per rollout")


def evaluate(task_name: str, model_cfg: ModelConfig, **kw) -> EvalResult:
    """`evaluate_task` with a progress bar on the console."""
    cols = (TextColumn("[bold]eval[/] {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols, console=console, transient=True) as bar:
        tid = bar.add_task(f"{task_name} x{kw.get('k', 1)}", total=None)
        return evaluate_task(task_name, model_cfg, on_start=lambda n: bar.update(tid, total=n),
                             on_item=lambda _: bar.advance(tid), progress=lambda s: console.print(f"[dim]{s}[/]"),
                             **kw)


def task_options(agent, max_turns, data_file, reward, sandbox: str = "bwrap") -> TaskOptions:
    if agent is not None and agent != "react":
        raise ConfigError(f"unknown --agent {agent!r}; the only agent is `react`")
    if sandbox not in ("bwrap", "process"):
        raise ConfigError(f"unknown --sandbox {sandbox!r}; choose bwrap (isolated, the default) or process "
                          "(the weaker process sandbox)")
    return TaskOptions(agent=agent, max_turns=max_turns, data_file=str(data_file) if data_file else None,
                       reward=reward, sandbox=sandbox)


def check_before_eval(task: str, split: str, cfg: ModelConfig, opts: TaskOptions, pool: ModelPool, *,
                      probe: bool) -> None:
    """Before any work: the task and its split load (agent mode: its sandbox can run), then the model
    answers a 1-token probe (hosted: its provider key is set). No probe for --checkpoint models."""
    from tasks.registry import load_task

    if not load_task(task, **opts.load_kwargs()).examples(split):
        raise ConfigError(f"task {task} has no items in split {split!r}")
    check_model_name(cfg.model)
    if probe:
        seconds = preflight(cfg, pool=pool)
        if seconds is not None:
            console.print(f"[dim]pre-flight: {cfg.model} answered in {seconds:.1f}s[/]")


def _evaluate_with_library(task: str, cfg: ModelConfig, opts: TaskOptions, pool: ModelPool, *, library: str,
                           version: int | None, db: Path | None, checkpoint: Path | None, device: str,
                           **kw) -> EvalResult:
    from tfgrpo.evaluation.library import prior_for_eval

    with prior_for_eval(library, version, db) as (apply_prior, lib, ver, call_log, on_done):
        chat_model = None
        if checkpoint is not None:
            from tfgrpo.grpo.hf_chat import HFChatModel

            chat_model = HFChatModel.from_checkpoint(checkpoint, device=device, call_log=call_log)
        result = evaluate(task, cfg, apply_prior=apply_prior, library=lib, version=ver, call_log=call_log,
                          task_options=opts, model=chat_model, pool=pool, **kw)
        on_done(result)
    return result


@guard
def eval_cmd(
    task: o.Task,
    model: str = typer.Option("local", "--model", "-m", help="local | local:qwen0.5b | local:smollm2 | litellm name"),
    library: str = typer.Option("none", "--library", "-l", help="Experience library to inject, or `none`."),
    version: Optional[int] = typer.Option(None, "--version", min=0, max=o.MAX_COUNT, help="Library version (default: latest)."),
    k: int = typer.Option(1, "--k", min=1, max=o.MAX_COUNT, help="Samples per item."),
    split: str = typer.Option("test", "--split"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, max=o.MAX_COUNT, help="First N items only."),
    seed: int = typer.Option(0, "--seed", min=0, max=o.MAX_SEED, help="Random seed (a non-negative integer)."),
    temperature: float = typer.Option(0.7, "--temperature", min=0.0, max=2.0),
    max_tokens: int = typer.Option(512, "--max-tokens", min=1, max=o.MAX_COUNT),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write metrics and per-item results here."),
    agent: Optional[str] = typer.Option(None, "--agent", help="`react`: solve with the ReAct agent and tools."),
    max_turns: int = typer.Option(5, "--max-turns", min=1, max=o.MAX_COUNT, help="Agent mode: max model turns."),
    data_file: Optional[Path] = typer.Option(None, "--data-file", help="Task jsonl: your JSONL file."),
    reward: Optional[str] = typer.Option(None, "--reward", help="jsonl: exact|numeric|math|regex; hotpotqa: f1|em."),
    sandbox: o.Sandbox = "bwrap",
    api_base: Optional[str] = typer.Option(None, "--api-base"),
    gguf: Optional[str] = typer.Option(None, "--gguf", help="Serve this GGUF with the embedded server."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Evaluate a `tfgrpo grpo` checkpoint "
                                                                         "(transformers, in-process)."),
    device: str = typer.Option("auto", "--device", help="With --checkpoint: auto | cpu | cuda."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Dataset folder (default $TFGRPO_DATA)."),
    db: Optional[Path] = typer.Option(None, "--db", help="Store file (default $TFGRPO_HOME/tfgrpo.duckdb)."),
) -> None:
    """Evaluate a model (optionally with a learned library): mean@k, pass@k, 95% bootstrap CI."""
    data_dir_option(data_dir)
    cfg = ModelConfig(model=model, api_base=api_base, gguf=gguf)
    opts = task_options(agent, max_turns, data_file, reward, sandbox)
    with ModelPool(progress=lambda s: console.print(f"[dim]{s}[/]")) as pool:
        check_before_eval(task, split, cfg, opts, pool, probe=checkpoint is None)
        result = _evaluate_with_library(task, cfg, opts, pool, library=library, version=version, db=db,
                                        checkpoint=checkpoint, device=device, k=k, split=split, limit=limit,
                                        seed=seed, temperature=temperature, max_tokens=max_tokens)
    print_metrics(result.metrics())
    if json_out:
        try:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        except OSError as exc:
            raise ConfigError(f"cannot write --json {json_out}: {exc.strerror}; pass a file path") from None
        out.print(f"wrote {json_out}")
