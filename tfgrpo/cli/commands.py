"""The `tfgrpo` command line (typer). Wiring only: each command builds configs and calls the library."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import typer  # noqa: E402

from tfgrpo.cli import compare, demo, grpo, models, report, serve  # noqa: E402
from tfgrpo.cli.eval import eval_cmd  # noqa: E402
from tfgrpo.cli.experiences import experiences_app, logs_cmd, runs_cmd  # noqa: E402
from tfgrpo.cli.train import train_cmd  # noqa: E402

app = typer.Typer(
    name="tfgrpo", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Training-Free GRPO: improve an LLM agent with a learned experience library, no weight updates.",
)

app.command("demo")(demo.cmd)
app.command("train")(train_cmd)
app.command("eval")(eval_cmd)
app.add_typer(experiences_app, name="experiences")
app.command("logs")(logs_cmd)
app.command("runs")(runs_cmd)
app.command("serve")(serve.cmd)
app.command("grpo")(grpo.cmd)
app.command("compare")(compare.cmd)
app.command("report")(report.cmd)
app.add_typer(models.models_app, name="models")


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops cleanly, like Ctrl-C
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
