"""Shared CLI plumbing: error guard, console, common option helpers."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable

import typer
from rich.console import Console

from tfgrpo.errors import NotImplementedYet, TfgrpoError

console = Console(stderr=True)
out = Console()


def guard(fn: Callable) -> Callable:
    """Turn user mistakes into one red line and exit code 2; Ctrl-C into exit 130. Never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TfgrpoError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper


def not_implemented(command: str) -> None:
    raise NotImplementedYet(f"`tfgrpo {command}` is not implemented yet in this release")


def data_dir_option(value: Path | None) -> Path | None:
    if value is not None:
        os.environ["TFGRPO_DATA"] = str(value)
    return value
