"""`tfgrpo compare`: baseline vs training-free vs weight-update on the same items, one table."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tfgrpo.cli import options as o
from tfgrpo.cli.common import console, data_dir_option, guard, out
from tfgrpo.evaluation.compare import HEADERS, CompareResult, RowSpec, run_compare, table_rows, to_markdown, training_free_cost
from tfgrpo.config import ModelConfig
from tfgrpo.errors import ConfigError


def _say(msg: str) -> None:
    console.print(f"[dim]{msg}[/]")


def _base_model(stack: ExitStack, cfg: ModelConfig, engine: str, device: str):
    if engine == "hf":
        from tfgrpo.grpo.hf_chat import HFChatModel

        _say(f"loading {cfg.model} with transformers")
        return HFChatModel.from_model(cfg.model, gguf=cfg.gguf, device=device)
    from tfgrpo.llm.factory import ModelPool

    pool = stack.enter_context(ModelPool(progress=_say))
    return pool.gateway(cfg)


def _library_row(stack: ExitStack, model, library: str, version: int | None, db: Path | None) -> RowSpec:
    from tfgrpo.prior import Prior
    from experience_store import open_store

    store = open_store(db)
    stack.callback(store.close)
    store.require_library(library)
    prior = Prior.from_store(store, library, version)
    return RowSpec("training-free", model, prior.apply, training_free_cost(store, library),
                   label=f"{library}@v{prior.version}")


def _checkpoint_row(checkpoint: Path, device: str, task: str, model: str, notes: list[str]) -> RowSpec:
    from tfgrpo.grpo.hf_chat import HFChatModel
    from tfgrpo.grpo.meta import cost_of, read_meta

    meta = read_meta(checkpoint)  # fails fast, before any model loads
    if meta.task != task:
        notes.append(f"the checkpoint was trained on task {meta.task!r}, compared here on {task!r}")
    if meta.base.name != model:
        notes.append(f"the checkpoint's base model is {meta.base.name!r}, the baseline is {model!r}")
    _say(f"loading checkpoint {checkpoint} with transformers")
    chat = HFChatModel.from_checkpoint(checkpoint, device=device)
    return RowSpec("weight-update", chat, None, cost_of(meta), label=str(checkpoint))


def print_table(res: CompareResult) -> None:
    table = Table(title=f"{res.task} ({res.split}): {len(res.item_ids)} items, k={res.k}, seed={res.seed}")
    for h in HEADERS:
        table.add_column(h, no_wrap=h == "row")
    for cells in table_rows(res):
        table.add_row(*cells)
    out.print(table)
    for note in res.notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False)


def _write(res: CompareResult, json_out: Path | None, md_out: Path | None) -> None:
    for path, text in ((json_out, lambda: json.dumps(res.to_json(), indent=2, ensure_ascii=False)),
                       (md_out, lambda: to_markdown(res))):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text())
            out.print(f"wrote {path}")


def _examples(task_name: str, split: str, limit: int | None, data_file: Path | None, reward: str | None):
    from tasks.registry import get_task

    task = get_task(task_name, data_file=data_file, reward=reward)
    items = task.examples(split)
    items = items[:limit] if limit else items
    if not items:
        raise ConfigError(f"task {task_name} has no items in split {split!r}")
    return task, items


def _run(task, items, rows: list[RowSpec], notes: list[str], k, seed, temperature, max_tokens, split):
    cols = (TextColumn("[bold]compare[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn())
    with Progress(*cols, console=console, transient=True) as bar:
        ids = {r.name: bar.add_task(r.name, total=len(items)) for r in rows}
        return run_compare(rows, task, items, k=k, seed=seed, temperature=temperature, max_tokens=max_tokens,
                           split=split, notes=notes, on_item=lambda name: bar.advance(ids[name]))


@guard
def cmd(
    task: str = typer.Option(..., "--task", "-t", help="Task name (gsm8k, math500, arith, ...)."),
    model: str = typer.Option("local", "--model", "-m", help="Baseline model: local | local:qwen0.5b | "
                                                             "local:smollm2 | litellm name."),
    library: Optional[str] = typer.Option(None, "--library", "-l", help="Learned library (training-free row)."),
    version: Optional[int] = typer.Option(None, "--version", min=0, max=o.MAX_COUNT, help="Library version (default: latest)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="`tfgrpo grpo` --out folder "
                                                                         "(weight-update row)."),
    k: int = typer.Option(1, "--k", min=1, max=o.MAX_COUNT, help="Samples per item."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, max=o.MAX_COUNT, help="First N items only."),
    split: str = typer.Option("test", "--split"),
    seed: int = typer.Option(0, "--seed", min=0, max=o.MAX_SEED, help="Seed of sampling (per item, shared by all rows) and bootstrap."),
    temperature: float = typer.Option(0.7, "--temperature", min=0.0, max=2.0),
    max_tokens: int = typer.Option(512, "--max-tokens", min=1, max=o.MAX_COUNT),
    engine: str = typer.Option("server", "--engine", help="Baseline/training-free inference: `server` (llama.cpp "
                                                          "or API) or `hf` (transformers, like the checkpoint)."),
    device: str = typer.Option("auto", "--device", help="Device of transformers models: auto | cpu | cuda."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full comparison as JSON here."),
    md_out: Optional[Path] = typer.Option(None, "--markdown", help="Write the table as Markdown here."),
    api_base: Optional[str] = typer.Option(None, "--api-base"),
    gguf: Optional[str] = typer.Option(None, "--gguf", help="Serve this GGUF with the embedded server."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Dataset folder (default $TFGRPO_DATA)."),
    data_file: Optional[Path] = typer.Option(None, "--data-file", help="Task jsonl: the JSONL file or folder."),
    reward: Optional[str] = typer.Option(None, "--reward", help="Reward kind (jsonl: exact|numeric|math|regex)."),
    db: Optional[Path] = typer.Option(None, "--db", help="Store file (default $TFGRPO_HOME/tfgrpo.duckdb)."),
) -> None:
    """Baseline vs training-free (library) vs weight-update (GRPO checkpoint): same items, same seeds."""
    if engine not in ("server", "hf"):
        raise ConfigError(f"--engine {engine!r}: use `server` or `hf`")
    data_dir_option(data_dir)
    the_task, items = _examples(task, split, limit, data_file, reward)
    notes: list[str] = []
    if library is None:
        notes.append("training-free row omitted: pass --library NAME")
    if checkpoint is None:
        notes.append("weight-update row omitted: pass --checkpoint DIR (the --out of `tfgrpo grpo`)")
    with ExitStack() as stack:
        wu = _checkpoint_row(checkpoint, device, the_task.name, model, notes) if checkpoint else None
        if wu is not None and engine == "server":
            notes.append("the weight-update row runs in transformers (fp32); the others through the model "
                         "server: add --engine hf to run all rows in one engine")
        base = _base_model(stack, ModelConfig(model=model, api_base=api_base, gguf=gguf), engine, device)
        rows = [RowSpec("baseline", base, label=model)]
        if library is not None:
            rows.append(_library_row(stack, base, library, version, db))
        rows += [wu] if wu else []
        res = _run(the_task, items, rows, notes, k, seed, temperature, max_tokens, split)
    print_table(res)
    _write(res, json_out, md_out)


if __name__ == "__main__":  # `python -m tfgrpo.cli.compare ...` where the full CLI's dependencies are absent
    typer.run(cmd)
