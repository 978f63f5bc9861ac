"""The `tfgrpo` command line (typer). Wiring only: each command builds configs and calls the library."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import typer  # noqa: E402

from tfgrpo.cli_common import guard, not_implemented  # noqa: E402
from tfgrpo import cli_eval, cli_models  # noqa: E402

app = typer.Typer(
    name="tfgrpo", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Training-Free GRPO: improve an LLM agent with a learned experience library, no weight updates.",
)

app.command("eval")(cli_eval.eval_cmd)
app.command("demo")(cli_eval.demo_cmd)
app.add_typer(cli_models.models_app, name="models")

try:  # the experience store's commands
    from tfgrpo.cli_store import experiences_app, logs_cmd, runs_cmd

    app.add_typer(experiences_app, name="experiences")
    app.command("logs")(logs_cmd)
    app.command("runs")(runs_cmd)
except ImportError:  # pragma: no cover - only while the store is absent
    pass

try:
    from tfgrpo.cli_train import train_cmd

    app.command("train")(train_cmd)
except ImportError:  # pragma: no cover
    @app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    @guard
    def train_cmd() -> None:
        """Learn an experience library (Training-Free GRPO)."""
        not_implemented("train")


def _stub(name: str, doc: str):
    @guard
    def cmd() -> None:
        not_implemented(name)

    cmd.__doc__ = doc
    app.command(name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(cmd)


for _name, _doc in (
    ("serve", "OpenAI-compatible proxy that injects the learned prior."),
    ("grpo", "Weight-update GRPO backend (TRL) on the same task and rewards."),
    ("compare", "Baseline vs training-free vs weight-update, side by side."),
    ("report", "Self-contained HTML report of what was learned."),
):
    try:
        mod = __import__(f"tfgrpo.cli_{_name}", fromlist=["cmd"])
        app.command(_name)(mod.cmd)
    except ImportError:
        _stub(_name, _doc)


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops cleanly, like Ctrl-C
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
