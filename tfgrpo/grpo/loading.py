"""Load causal LMs for GRPO training and in-process evaluation: embedded GGUF files (dequantized by
transformers through `gguf`), local folders, Hugging Face names, and `tfgrpo grpo` checkpoints (full
weights or a LoRA adapter over the recorded base). torch/transformers/peft are imported lazily here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tfgrpo.errors import ConfigError, ModelNotAvailableError
from tfgrpo.grpo.meta import CheckpointMeta, ModelSource, read_meta
from tfgrpo.llm.registry import LOCAL_MODELS, is_local

# Full fine-tuning holds fp32 weights + grads + two Adam moments: about 16 bytes per parameter.
BYTES_PER_PARAM_FULL = 16


def grpo_missing_hint() -> str:
    return "the weight-update backend needs the grpo extra: pip install 'tfgrpo[grpo]'"


def require_grpo_extra() -> None:
    """Raise a clear error when torch/transformers/trl are not installed."""
    import importlib.util

    missing = [m for m in ("torch", "transformers", "trl", "datasets") if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelNotAvailableError(f"{', '.join(missing)} not installed; {grpo_missing_hint()}")


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but no CUDA device is visible; use --device cpu or auto")
    return device


def resolve_source(model: str, gguf: str | None = None) -> ModelSource:
    """Decide where the base weights come from, without loading them."""
    from tfgrpo.llm.fetch import resolve_gguf

    if gguf:
        return ModelSource(name=model, kind="gguf", path=str(resolve_gguf(model, gguf)))
    if is_local(model):
        if model not in LOCAL_MODELS:
            raise ModelNotAvailableError(f"unknown local model {model!r}; valid: {', '.join(LOCAL_MODELS)}")
        return ModelSource(name=model, kind="gguf", path=str(resolve_gguf(model)))
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(name=model, kind="gguf", path=str(path.resolve()))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotAvailableError(f"{path} has no config.json: not a transformers model folder")
        return ModelSource(name=model, kind="hf", path=str(path.resolve()))
    if model == "scripted" or "/" not in model:
        raise ModelNotAvailableError(f"--model {model!r} is neither an embedded model ({', '.join(LOCAL_MODELS)}), "
                                     "a .gguf file, a model folder, nor a Hugging Face name like org/name")
    return ModelSource(name=model, kind="hf", path=model)


def clear_quantizer(model: Any) -> Any:
    """A GGUF-loaded model is dequantized but still marked quantized, which blocks training: clear it."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def _finish_tokenizer(tok: Any) -> Any:
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(source: ModelSource, *, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) in fp32 on `device`. GGUF weights are dequantized and unmarked as quantized."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    where = source.path
    if source.kind == "gguf":
        path = Path(source.path)
        where, kwargs["gguf_file"] = str(path.parent), path.name
    try:
        tok = AutoTokenizer.from_pretrained(where, **{k: v for k, v in kwargs.items() if k == "gguf_file"})
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelNotAvailableError(f"cannot load {source.name} ({source.path}): {exc}. Offline, pass a local "
                                     "folder, a .gguf file or an embedded name such as local:smollm2") from exc
    if source.kind == "gguf":
        clear_quantizer(model)
    return model.to(device), _finish_tokenizer(tok)


def load_checkpoint(checkpoint: str | Path, *, device: str = "cpu") -> tuple[Any, Any, CheckpointMeta]:
    """(model, tokenizer, meta) of a `tfgrpo grpo` output folder; a LoRA adapter is merged into its base."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import torch

    meta = read_meta(checkpoint)
    folder = Path(checkpoint).expanduser()
    if meta.weights == "none":
        raise ModelNotAvailableError(f"{folder} holds no weights (trained with --no-save); re-run `tfgrpo grpo`")
    if meta.weights == "adapter":
        from peft import PeftModel

        base, _ = load_causal_lm(meta.base, device=device)
        model = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).to(device)
    tok = AutoTokenizer.from_pretrained(str(folder))
    model.eval()
    return model, _finish_tokenizer(tok), meta


def total_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 0


def check_fits(model_name: str, *, lora: bool, device: str, n_params: int | None = None) -> None:
    """Refuse CPU runs that cannot fit in memory, with the fix in the message."""
    if device != "cpu" or lora:
        return
    if model_name == "local":
        raise ConfigError("full fine-tuning of `local` (Qwen2.5-Coder-1.5B) does not fit CPU memory (fp32 "
                          "weights + grads + Adam ~ 24 GB); add --lora, or use --model local:smollm2 on CPU, "
                          "or run on a CUDA machine")
    ram = total_memory_bytes()
    if n_params and ram and n_params * BYTES_PER_PARAM_FULL > 0.8 * ram:
        need = n_params * BYTES_PER_PARAM_FULL / 2**30
        raise ConfigError(f"full fine-tuning of {model_name} needs ~{need:.0f} GiB on CPU but the machine has "
                          f"{ram / 2**30:.0f} GiB; add --lora or use a smaller model")
