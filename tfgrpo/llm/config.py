"""Which model to call and how (`--model`, `--api-base`, ...). `extra="forbid"`: a misspelled key is an error."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ModelConfig(BaseModel):
    """Which model to call and how."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("local", description="`local`, `local:qwen0.5b`, `local:smollm2`, `scripted`, or a "
                                            "litellm model name such as openai/gpt-4.1-mini.")
    api_base: str | None = Field(None, description="OpenAI-compatible base URL (vLLM, Ollama, llama.cpp).")
    api_key: str | None = Field(None, description="API key; default from the provider's env variable.")
    gguf: str | None = Field(None, description="Serve this GGUF file with the embedded server.")
    concurrency: int = Field(8, ge=1, description="Max requests in flight to this model.")
    timeout_s: float = Field(300.0, gt=0, description="Per-call timeout in seconds.")
    max_attempts: int = Field(4, ge=1, description="Attempts per call on transient faults.")
    n_ctx: int | None = Field(None, ge=256, description="Context size for the embedded server.")


def from_stored(data: dict) -> ModelConfig:
    """A model config as a run stored it (`model_dump`, every field written out). A value equal to the
    field's default counts as unset, as it was when the run started: what derives from an unset field (an
    embedded server's timeout, scaled with the call's `max_tokens` and never below `timeout_s`) is derived
    again on resume instead of being pinned to the default."""
    defaults = ModelConfig().model_dump(mode="json")
    return ModelConfig.model_validate({k: v for k, v in data.items() if k not in defaults or v != defaults[k]})
