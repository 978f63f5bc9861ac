"""The `tfgrpo` command line: one module per command, wiring only (commands call the engine, never the
reverse). `main` and `app` load lazily, so `python -m tfgrpo.cli.grpo` runs where the full CLI's
dependencies (duckdb, litellm) are absent."""

from __future__ import annotations


def main() -> None:
    from tfgrpo.cli.commands import main as _main

    _main()


def __getattr__(name: str):
    if name == "app":
        from tfgrpo.cli.commands import app

        return app
    raise AttributeError(f"module 'tfgrpo.cli' has no attribute {name!r}")
