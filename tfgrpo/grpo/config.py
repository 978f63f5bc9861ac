"""`GrpoConfig`: the weight-update GRPO run (TRL). Imports no torch, so the CLI can validate cheaply."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class GrpoConfig(BaseModel):
    """`tfgrpo grpo`: one GRPO training run with TRL on a task's own reward."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(..., description="Task name (its reward function is the GRPO reward).")
    model: str = Field(..., description="`local`, `local:qwen0.5b`, `local:smollm2` (embedded GGUF loaded by "
                                        "transformers), a local model folder, or a Hugging Face model name.")
    out: str = Field(..., description="Output folder: checkpoint, TRL metrics, tfgrpo_grpo.json.")
    gguf: str | None = Field(None, description="Train from this GGUF file instead of an embedded one.")
    data_file: str | None = Field(None, description="Task `jsonl` only: the JSONL file or folder.")
    reward: str | None = Field(None, description="Reward kind where the task offers several (jsonl, hotpotqa).")
    split: str = Field("train", description="Split whose questions are the training prompts.")
    limit: int | None = Field(None, ge=1, description="Use only the first N training questions.")
    max_steps: int = Field(100, ge=1, description="Optimizer steps.")
    group_size: int = Field(8, ge=2, description="Completions per prompt (G, TRL num_generations).")
    batch_size: int = Field(4, ge=1, description="Prompts per optimizer step (B); B*G completions per step.")
    lr: float | None = Field(None, gt=0, description="AdamW learning rate; default 2e-6 for full fine-tuning, "
                                                     "5e-5 with LoRA.")
    max_completion_length: int = Field(256, ge=1, description="Max generated tokens per completion.")
    temperature: float = Field(1.0, gt=0, le=2, description="Sampling temperature of the rollouts.")
    beta: float = Field(0.0, ge=0, description="KL coefficient; 0 loads no reference model (TRL default).")
    lora: bool = Field(False, description="Train a LoRA adapter (peft) instead of all weights.")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha.")
    seed: int = Field(0, description="Seed of sampling, shuffling and initialisation.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when present, else cpu.")
    threads: int | None = Field(None, ge=1, description="CPU threads for torch (default: torch's choice; 1 is "
                                                        "fastest on a busy machine).")
    logging_steps: int = Field(1, ge=1, description="Log TRL metrics every N steps.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory (large models).")
    save: bool = Field(True, description="Save the trained weights (or adapter) into `out`.")

    @model_validator(mode="after")
    def _default_lr(self) -> "GrpoConfig":
        if self.lr is None:
            self.lr = 5e-5 if self.lora else 2e-6
        return self

    @property
    def completions_per_step(self) -> int:
        return self.batch_size * self.group_size
