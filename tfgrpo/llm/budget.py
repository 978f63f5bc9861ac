"""Hard budgets on USD, calls and tokens. Checked before every LLM call; a call that would pass a cap
raises `BudgetExceeded` so the run stops cleanly between calls."""

from __future__ import annotations

import threading

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tfgrpo.errors import BudgetExceeded


class BudgetConfig(BaseModel):
    """Caps for one run. `None` means no cap."""

    model_config = ConfigDict(extra="forbid")

    max_usd: float | None = Field(None, description="Stop before total cost would exceed this (USD).")
    max_calls: int | None = Field(None, description="Stop before the number of LLM calls exceeds this.")
    max_tokens: int | None = Field(None, description="Stop before prompt+completion tokens exceed this.")

    @field_validator("max_usd", "max_calls", "max_tokens")
    @classmethod
    def _non_negative(cls, v):
        if v is not None and v < 0:
            raise ValueError("budget caps must be >= 0 (omit the option for no cap)")
        return v


class Budget:
    """Running totals against a `BudgetConfig`. Thread/async safe for the gateway's use."""

    def __init__(self, config: BudgetConfig | None = None, *, usd: float = 0.0, calls: int = 0,
                 tokens: int = 0) -> None:
        self.config = config or BudgetConfig()
        self.usd, self.calls, self.tokens = usd, calls, tokens
        self._reserved_calls = 0
        self._lock = threading.Lock()

    def reserve(self, est_tokens: int = 0, est_usd: float = 0.0) -> None:
        """Claim one call; raise `BudgetExceeded` if it would pass a cap."""
        c = self.config
        with self._lock:
            calls = self.calls + self._reserved_calls + 1
            if c.max_calls is not None and calls > c.max_calls:
                raise BudgetExceeded(f"call budget reached ({c.max_calls} calls); raise --max-calls to go on")
            if c.max_tokens is not None and self.tokens + est_tokens > c.max_tokens:
                raise BudgetExceeded(
                    f"token budget reached ({self.tokens} of {c.max_tokens}); raise --max-tokens to go on")
            if c.max_usd is not None and self.usd + est_usd > c.max_usd:
                raise BudgetExceeded(
                    f"USD budget reached (${self.usd:.4f} of ${c.max_usd:.4f}); raise --budget-usd to go on")
            self._reserved_calls += 1

    def settle(self, tokens: int, usd: float) -> None:
        """Record the real usage of a reserved call."""
        with self._lock:
            self._reserved_calls = max(0, self._reserved_calls - 1)
            self.calls += 1
            self.tokens += tokens
            self.usd += usd

    def release(self) -> None:
        """Give back a reservation whose call was never sent."""
        with self._lock:
            self._reserved_calls = max(0, self._reserved_calls - 1)
