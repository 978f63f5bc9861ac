"""Domain errors. Every message says what went wrong and how to fix it.

The CLI turns any `TfgrpoError` into one red line and exit code 2 (user mistakes) — never a traceback.
"""

from __future__ import annotations


class TfgrpoError(Exception):
    """Base class: a problem the user can fix; the message says how."""

    exit_code = 2


class ConfigError(TfgrpoError):
    """A configuration value is invalid."""


class UnknownTaskError(TfgrpoError):
    """The task name is not registered."""


class DataError(TfgrpoError):
    """A dataset is missing or malformed."""


class ModelNotAvailableError(TfgrpoError):
    """A model (GGUF file, llama-cpp install, hosted name) cannot be used."""


class LLMError(TfgrpoError):
    """An LLM call failed permanently (after retries, or a non-retryable fault)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable

    @property
    def fatal(self) -> bool:
        """Auth / permission / unknown model: every later call would fail the same way, so a run stops."""
        return self.status in (401, 403, 404)


class ModelUnreachable(LLMError):
    """Calls in a row could not reach the model (connection refused or reset, no answer in time): a training
    run stops as `stopped_unreachable`, keeps what it stored, and `--resume` continues once the model is back."""

    @property
    def fatal(self) -> bool:
        return True


class BudgetExceeded(TfgrpoError):
    """A hard budget (USD, calls, tokens) would be exceeded by the next call."""


class StoreError(TfgrpoError):
    """The experience store refused an operation (unknown id, locked file, newer schema...)."""
