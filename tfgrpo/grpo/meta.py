"""The checkpoint's metadata file (`tfgrpo_grpo.json` in `--out`): what was trained, from what, at what
cost. Written by the GRPO backend, read by `tfgrpo compare` and by checkpoint loading. No torch here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tfgrpo.errors import ModelNotAvailableError

META_FILE = "tfgrpo_grpo.json"
METRICS_FILE = "trl_metrics.jsonl"


class ModelSource(BaseModel):
    """Where the base weights come from: a GGUF file (dequantized by transformers) or an HF folder/name."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="What the user passed to --model.")
    kind: str = Field(..., description="'gguf' or 'hf'.")
    path: str = Field(..., description="GGUF file path, local folder, or Hugging Face model name.")


class CheckpointMeta(BaseModel):
    """Everything `compare` and `eval --checkpoint` need to know about a GRPO checkpoint."""

    model_config = ConfigDict(extra="forbid")

    format: int = 1
    task: str
    base: ModelSource
    lora: bool = False
    weights: str = Field("full", description="'full' (model files in the folder), 'adapter' (peft adapter "
                                              "over `base`), or 'none' (--no-save).")
    steps: int = 0
    wall_s: float = 0.0
    train_s: float = Field(0.0, description="Seconds inside trainer.train().")
    cpu_s: float = Field(0.0, description="CPU seconds of the process (user + system) during training.")
    gpu_s: float = Field(0.0, description="GPU seconds (train seconds x GPUs), 0 on CPU.")
    peak_gpu_mem_gib: float | None = Field(None, description="Peak GPU memory allocated by torch (CUDA only).")
    step_s: float | None = Field(None, description="Mean seconds per optimizer step.")
    device: str = "cpu"
    device_name: str = ""
    completions: int = Field(0, description="Completions sampled in training.")
    config: dict[str, Any] = Field(default_factory=dict)
    final_metrics: dict[str, Any] = Field(default_factory=dict)
    reward_stats: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    run_id: str | None = None
    created_at: float = 0.0


def write_meta(out: str | Path, meta: CheckpointMeta) -> Path:
    path = Path(out) / META_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta.model_dump(mode="json"), indent=2, ensure_ascii=False))
    return path


def read_meta(checkpoint: str | Path) -> CheckpointMeta:
    """Read `<checkpoint>/tfgrpo_grpo.json`; a clear error when the folder is not a tfgrpo GRPO output."""
    folder = Path(checkpoint).expanduser()
    path = folder / META_FILE
    if not folder.is_dir():
        raise ModelNotAvailableError(f"--checkpoint {checkpoint}: no such folder; pass the --out folder of a "
                                     "`tfgrpo grpo` run")
    if not path.is_file():
        raise ModelNotAvailableError(f"{folder} has no {META_FILE}: it is not the --out folder of a `tfgrpo grpo` "
                                     "run (train one with `tfgrpo grpo --task T --model M --out DIR`)")
    try:
        return CheckpointMeta.model_validate_json(path.read_text())
    except ValueError as exc:
        raise ModelNotAvailableError(f"{path} is unreadable ({exc}); re-run `tfgrpo grpo` into a new --out") from exc


def cost_of(meta: CheckpointMeta) -> dict[str, Any]:
    """The training-cost cells of the weight-update row in `tfgrpo compare`."""
    return {"kind": "grpo", "steps": meta.steps, "completions": meta.completions, "cpu_s": round(meta.cpu_s, 1),
            "gpu_s": round(meta.gpu_s, 1), "device": meta.device_name or meta.device,
            "train_wall_s": round(meta.wall_s, 1)}
