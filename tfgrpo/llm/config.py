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
