"""The `WeightBackend` seam and its one implementation, TRL's GRPOTrainer.

The reward is the task's own (`tfgrpo.grpo.rewards.TaskReward`), so the weight-update run optimises
exactly what Training-Free GRPO is scored on. The output folder gets the weights (full model, or the
LoRA adapter), the tokenizer, TRL's log history (`trl_metrics.jsonl`) and `tfgrpo_grpo.json`."""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from tasks.base import Example, Task
from tfgrpo.errors import ConfigError
from tfgrpo.grpo.config import GrpoConfig
from tfgrpo.grpo.meta import METRICS_FILE, CheckpointMeta, write_meta
from tfgrpo.grpo.rewards import TaskReward, build_rows

Progress = Callable[[str], None]


@dataclass
class TrainOutcome:
    """What a weight-update run produced: the checkpoint folder, its metadata and the metric history."""

    checkpoint: Path
    meta: CheckpointMeta
    log_history: list[dict[str, Any]] = field(default_factory=list)


@runtime_checkable
class WeightBackend(Protocol):
    """Trains a model's weights on `task` with the task's reward and returns the checkpoint + metrics.

    Contract: `train` writes everything into `config.out` (weights unless `config.save` is false, the
    metric history, and `tfgrpo_grpo.json` readable by `tfgrpo.grpo.meta.read_meta`); user mistakes
    raise `TfgrpoError` subclasses before any heavy work starts.
    """

    name: str

    def check(self, config: GrpoConfig, n_examples: int) -> None:
        """Refuse a config that cannot run here (memory, devices) before any run row or heavy work."""
        ...

    def train(self, task: Task, examples: Sequence[Example], config: GrpoConfig, *,
              progress: Progress = lambda s: None) -> TrainOutcome: ...


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def trl_args(config: GrpoConfig, device: str) -> Any:
    """TRL GRPOConfig: one optimizer step per generation batch of B prompts x G completions."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(Path(config.out) / "trl"), max_steps=config.max_steps,
        per_device_train_batch_size=config.completions_per_step, gradient_accumulation_steps=1,
        num_generations=config.group_size, max_completion_length=config.max_completion_length,
        learning_rate=config.lr, temperature=config.temperature, beta=config.beta, seed=config.seed,
        logging_steps=config.logging_steps, save_strategy="no", report_to="none", use_vllm=False,
        bf16=False, fp16=False, use_cpu=device == "cpu", gradient_checkpointing=config.gradient_checkpointing,
        dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True, log_completions=False,
    )


def lora_config(config: GrpoConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0, bias="none",
                      task_type="CAUSAL_LM", target_modules="all-linear")


def _step_timer(progress: Progress, max_steps: int) -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self._t = 0.0

        def on_step_begin(self, args, state, control, **kw):
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self._t)
            progress(f"step {state.global_step}/{max_steps} in {self.times[-1]:.1f}s")

    return StepTimer()


def _peak_gpu_gib(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


def _device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(0) if device == "cuda" else "cpu"


def _versions() -> dict[str, str]:
    import torch
    import transformers
    import trl

    return {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__}


class TrlBackend:
    """GRPO with TRL (`trl.GRPOTrainer`), in fp32, on CPU or one CUDA device."""

    name = "trl"

    def check(self, config: GrpoConfig, n_examples: int) -> str:
        """Validate before work starts; returns the device the run will use."""
        from tfgrpo.grpo.loading import check_fits, require_grpo_extra, resolve_device

        require_grpo_extra()
        if n_examples < config.batch_size:
            raise ConfigError(f"--batch-size {config.batch_size} needs at least that many training questions, "
                              f"got {n_examples}; lower --batch-size or raise --limit")
        device = resolve_device(config.device)
        check_fits(config.model, lora=config.lora, device=device)
        return device

    def train(self, task: Task, examples: Sequence[Example], config: GrpoConfig, *,
              progress: Progress = lambda s: None) -> TrainOutcome:
        from tfgrpo.grpo.loading import resolve_source

        device = self.check(config, len(examples))
        set_threads(config.threads)
        source = resolve_source(config.model, config.gguf)
        start, cpu0 = time.perf_counter(), _cpu_seconds()
        trainer, reward, timer = self._trainer(task, examples, config, device, source, progress)
        progress(f"training {config.max_steps} step(s) on {device}: {config.batch_size} prompts x "
                 f"{config.group_size} completions per step")
        t0 = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - t0
        weights = self._save(trainer, config)
        history = list(trainer.state.log_history)
        meta = CheckpointMeta(
            task=task.name, base=source, lora=config.lora, weights=weights, steps=trainer.state.global_step,
            wall_s=time.perf_counter() - start, train_s=train_s, cpu_s=_cpu_seconds() - cpu0,
            gpu_s=train_s if device == "cuda" else 0.0, peak_gpu_mem_gib=_peak_gpu_gib(device),
            step_s=(sum(timer.times) / len(timer.times)) if timer.times else None, device=device,
            device_name=_device_name(device), completions=len(reward.scores), config=config.model_dump(),
            final_metrics=_final_metrics(history), reward_stats=reward.stats(), versions=_versions(),
            created_at=time.time())
        self._write_history(config.out, history)
        write_meta(config.out, meta)
        return TrainOutcome(Path(config.out), meta, history)

    def _trainer(self, task, examples, config, device, source, progress) -> tuple[Any, TaskReward, Any]:
        from datasets import Dataset
        from trl import GRPOTrainer

        from tfgrpo.grpo.loading import check_fits, load_causal_lm

        progress(f"loading {source.name} ({source.kind}) with transformers")
        model, tok = load_causal_lm(source, device=device)
        check_fits(config.model, lora=config.lora, device=device, n_params=model.num_parameters())
        reward = TaskReward(task, examples)
        timer = _step_timer(progress, config.max_steps)
        trainer = GRPOTrainer(
            model=model, reward_funcs=[reward], args=trl_args(config, device),
            train_dataset=Dataset.from_list(build_rows(task, examples)), processing_class=tok,
            peft_config=lora_config(config) if config.lora else None, callbacks=[timer])
        return trainer, reward, timer

    @staticmethod
    def _save(trainer: Any, config: GrpoConfig) -> str:
        if not config.save:
            return "none"
        trainer.save_model(config.out)
        trainer.processing_class.save_pretrained(config.out)
        return "adapter" if config.lora else "full"

    @staticmethod
    def _write_history(out: str, history: list[dict[str, Any]]) -> None:
        path = Path(out) / METRICS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            for row in history:
                fh.write(json.dumps(row, default=str) + "\n")


def _final_metrics(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The last logged training metrics plus the summary row TRL writes at the end."""
    merged: dict[str, Any] = {}
    for row in history:
        merged.update({k: v for k, v in row.items() if isinstance(v, (int, float))})
    return merged
