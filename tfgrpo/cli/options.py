"""The CLI's options, each declared once. Where an option sets a config field, its help text and bounds
come from that pydantic field, so the flag and the config cannot disagree; every integer option has a
lower and an upper bound, so no value a user can type reaches the engine or the store unchecked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import annotated_types as at
import typer
from pydantic import BaseModel

from tfgrpo.config import ModelConfig, SamplingConfig, TaskOptions, TrainConfig
from tfgrpo.llm.budget import BudgetConfig

#: Upper bounds: counts (items, steps, calls, tokens), seeds and versions. Far above any real use,
#: far below what the store's 64-bit integers or numpy's 32-bit seeds overflow on.
MAX_COUNT = 1_000_000_000
MAX_SEED = 2**32 - 1


def field_option(model: type[BaseModel], name: str, *flags: str, help: str | None = None,
                 max: float | None = None, **kw: Any) -> Any:
    """A `typer.Option` for `model.<name>`: its description as help, its ge/gt/le/lt as min/max."""
    info = model.model_fields[name]
    lo = hi = None
    for m in info.metadata:
        if isinstance(m, (at.Ge, at.Gt)):
            lo = m.ge if isinstance(m, at.Ge) else m.gt
        elif isinstance(m, (at.Le, at.Lt)):
            hi = m.le if isinstance(m, at.Le) else m.lt
    lo = kw.pop("min", lo)
    hi = hi if hi is not None else max
    return typer.Option(*flags, help=help or info.description, min=lo, max=hi, **kw)


def count_option(*flags: str, help: str, lo: int = 1) -> Any:
    return typer.Option(*flags, help=help, min=lo, max=MAX_COUNT)


# -- shared by several commands ----------------------------------------------------------------------
Db = Annotated[Optional[str], typer.Option("--db", help="Store: a DuckDB file or a postgresql:// URL (default "
                                         "$TFGRPO_DB, else $TFGRPO_HOME/tfgrpo.duckdb).")]
DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="Dataset folder (default $TFGRPO_DATA).")]
Task = Annotated[str, typer.Option("--task", "-t", help="Task name (gsm8k, math500, math500-hard, aime24, aime25, dapo, "
                                                        "hotpotqa, arith, jsonl).")]
Model = Annotated[str, field_option(ModelConfig, "model", "--model", "-m")]
ApiBase = Annotated[Optional[str], field_option(ModelConfig, "api_base", "--api-base")]
Gguf = Annotated[Optional[str], field_option(ModelConfig, "gguf", "--gguf")]
Seed = Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Random seed (0 .. 2^32-1).")]
Limit = Annotated[Optional[int], count_option("--limit", help="First N items only.")]
K = Annotated[int, typer.Option("--k", min=1, max=1024, help="Samples per item.")]
Version = Annotated[Optional[int], typer.Option("--version", min=0, max=MAX_COUNT,
                                                help="Library version (default: latest).")]
Temperature = Annotated[float, field_option(SamplingConfig, "temperature", "--temperature")]
MaxTokens = Annotated[int, field_option(SamplingConfig, "max_tokens", "--max-tokens", max=1_000_000)]
Split = Annotated[str, typer.Option("--split", help="Dataset split (train or test).")]

ExpId = Annotated[int, typer.Argument(min=1, max=MAX_COUNT, help="Experience id.")]
VersionArg = Annotated[int, typer.Argument(min=0, max=MAX_COUNT, help="Library version.")]

# -- how the task is loaded (TaskOptions) ------------------------------------------------------------
Agent = Annotated[Optional[str], field_option(TaskOptions, "agent", "--agent")]
MaxTurns = Annotated[int, field_option(TaskOptions, "max_turns", "--max-turns", max=1000)]
DataFile = Annotated[Optional[Path], field_option(TaskOptions, "data_file", "--data-file")]
Reward = Annotated[Optional[str], field_option(TaskOptions, "reward", "--reward")]
Sandbox = Annotated[str, field_option(TaskOptions, "sandbox", "--sandbox")]

# -- training (TrainConfig, BudgetConfig) ------------------------------------------------------------
Epochs = Annotated[int, field_option(TrainConfig, "epochs", "--epochs", help="Passes over the questions.",
                                     max=10_000)]
BatchSize = Annotated[int, field_option(TrainConfig, "batch_size", "--batch-size", max=100_000)]
GroupSize = Annotated[int, field_option(TrainConfig, "group_size", "--group-size", min=1, max=1024)]
BudgetUsd = Annotated[Optional[float], field_option(BudgetConfig, "max_usd", "--budget-usd", min=0.0)]
MaxCalls = Annotated[Optional[int], field_option(BudgetConfig, "max_calls", "--max-calls", min=0, max=MAX_COUNT)]
MaxTokensTotal = Annotated[Optional[int], field_option(BudgetConfig, "max_tokens", "--max-tokens-total", min=0,
                                                       max=10**15)]

# -- learning what helps (TrainConfig) ---------------------------------------------------------------
GateItems = Annotated[int, field_option(TrainConfig, "gate_items", "--gate-items")]
GateThreshold = Annotated[float, field_option(TrainConfig, "gate_threshold", "--gate-threshold")]
GateAlpha = Annotated[float, field_option(TrainConfig, "gate_alpha", "--gate-alpha")]
PruneAfter = Annotated[int, field_option(TrainConfig, "prune_after", "--prune-after")]
PriorExamples = Annotated[int, field_option(TrainConfig, "prior_examples", "--prior-examples")]
LearnerApiBase = Annotated[Optional[str], typer.Option("--learner-api-base", help="OpenAI-compatible base URL of "
                                                       "the learner model (default: its provider's own endpoint).")]

# -- `tfgrpo train` only -------------------------------------------------------------------------------
PolicyModel = Annotated[str, typer.Option("--model", "-m", help="Policy model: local | local:qwen0.5b | "
                                                                "local:smollm2 | a litellm name.")]
TrainLibrary = Annotated[str, typer.Option("--library", "-l", help="Library to learn into.")]
LearnerModel = Annotated[Optional[str], typer.Option("--learner-model", help="Learner model (default: --model).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print estimated calls/tokens/USD and exit.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the latest unfinished run of the library.")]
NoGroundTruth = Annotated[bool, typer.Option("--no-ground-truth", help="Majority-vote rewards; no gold labels.")]
AllowGroupOfOne = Annotated[bool, typer.Option("--allow-group-of-one", help="Allow G=1 (an ablation).")]
NoAllWrong = Annotated[bool, typer.Option("--no-all-wrong", help="Skip all-wrong groups.")]
Mlflow = Annotated[bool, typer.Option("--mlflow", help="Track the run with MLflow: parameters, per-step figures, "
                                      "the final library and report (needs: pip install 'tfgrpo[mlflow]').")]
MlflowUri = Annotated[Optional[str], typer.Option("--mlflow-uri", help="MLflow tracking URI for --mlflow (default: "
                                                  "$MLFLOW_TRACKING_URI, else ./mlruns).")]
Lessons = Annotated[bool, typer.Option("--lessons/--no-lessons", help="Learn lessons (advice).")]
Examples = Annotated[bool, typer.Option("--examples/--no-examples", help="Keep winning solutions of mixed groups "
                                                                         "as worked examples.")]
