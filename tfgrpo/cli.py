"""The `tfgrpo` command line (typer). Wiring only: each command builds configs and calls the library."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import typer  # noqa: E402

from tfgrpo import cli_compare, cli_eval, cli_grpo, cli_models, cli_report, cli_serve  # noqa: E402
from tfgrpo.cli_store import experiences_app, logs_cmd, runs_cmd  # noqa: E402
from tfgrpo.cli_train import train_cmd  # noqa: E402

app = typer.Typer(
    name="tfgrpo", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Training-Free GRPO: improve an LLM agent with a learned experience library, no weight updates.",
)

app.command("demo")(cli_eval.demo_cmd)
app.command("train")(train_cmd)
app.command("eval")(cli_eval.eval_cmd)
app.add_typer(experiences_app, name="experiences")
app.command("logs")(logs_cmd)
app.command("runs")(runs_cmd)
app.command("serve")(cli_serve.cmd)
app.command("grpo")(cli_grpo.cmd)
app.command("compare")(cli_compare.cmd)
app.command("report")(cli_report.cmd)
app.add_typer(cli_models.models_app, name="models")


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops cleanly, like Ctrl-C
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
