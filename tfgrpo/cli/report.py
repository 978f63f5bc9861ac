"""`tfgrpo report`: write one self-contained HTML page about a library (mounted by `tfgrpo/cli.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tfgrpo.cli import options as o
from tfgrpo.cli.common import guard, out
from tfgrpo.errors import ConfigError


@guard
def cmd(
    library: Annotated[str, typer.Option("--library", "-l", help="Library to report on.")],
    db: Annotated[Optional[Path], typer.Option("--db", help="Store file (default $TFGRPO_HOME/tfgrpo.duckdb).")] = None,
    run: Annotated[Optional[str], typer.Option("--run", help="Run to describe (default: the library's latest training run).")] = None,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path("report.html"),
    v_from: Annotated[Optional[int], typer.Option("--from", min=0, max=o.MAX_COUNT, help="Diff from this version (default 0, the empty library).")] = None,
    v_to: Annotated[Optional[int], typer.Option("--to", min=0, max=o.MAX_COUNT, help="Diff to this version (default: the current one).")] = None,
    max_chars: Annotated[int, typer.Option("--max-chars", min=1, max=o.MAX_COUNT, help="Longest rollout / learner text kept in the page.")] = 4000,
) -> None:
    """Self-contained HTML report of what was learned: run, plots, experiences with history, diff, rejections."""
    from experience_store.location import is_postgres_url
    from experience_store.open import store_location
    from tfgrpo.report import write_report

    if max_chars < 100:
        raise ConfigError(f"--max-chars must be >= 100, got {max_chars}")
    path = store_location(db)
    if not is_postgres_url(path) and not Path(path).exists():
        raise ConfigError(f"no store at {path}; pass --db PATH or train a library first (`tfgrpo train ...`)")
    summary = write_report(path, library, out_path, run_id=run, v_from=v_from, v_to=v_to, max_chars=max_chars)
    run_txt = f"run {summary.run_id}" if summary.run_id else "no run"
    out.print(f"wrote {summary.path} ({summary.bytes / 1024:.0f} KiB): {summary.experiences} experiences, "
              f"plots: {', '.join(summary.plots) or 'none'}, {run_txt}", highlight=False, soft_wrap=True)
