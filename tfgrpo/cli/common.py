"""Shared CLI plumbing: error guard, console, common option helpers."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable

import typer
from rich.console import Console
from rich.markup import escape

from tfgrpo.errors import TfgrpoError

console = Console(stderr=True)
out = Console()


def guard(fn: Callable) -> Callable:
    """Turn user mistakes into one red line and exit code 2; Ctrl-C into exit 130. Never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TfgrpoError as exc:
            console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper


def validated(model_cls, *, flag_style: bool = False, **kw):
    """Build a pydantic config; the first validation error becomes a `ConfigError` naming the field."""
    from pydantic import ValidationError

    from tfgrpo.errors import ConfigError

    try:
        return model_cls(**kw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        where = f"--{where.replace('_', '-')}" if flag_style else where
        raise ConfigError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None



def data_dir_option(value: Path | None) -> Path | None:
    if value is not None:
        os.environ["TFGRPO_DATA"] = str(value)
    return value


def shorten(text: str | None, width: int = 70) -> str:
    """`text` on one line (whitespace runs collapsed), cut to `width` characters with an ellipsis."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
