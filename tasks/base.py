"""The Task seam: what is learned on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Example:
    """One item of a dataset. `answer` is the gold answer; `solution` an optional worked solution."""

    id: str
    question: str
    answer: str
    solution: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Reward:
    """A reward in [0, 1] with the reason kept.

    `extracted` is the answer parsed from the completion (None when nothing could be parsed);
    `format_ok` says whether the completion followed the answer format the task asked for.
    A failed parse is score 0 with the reason in `reason`.
    """

    score: float
    reason: str = ""
    extracted: str | None = None
    format_ok: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"reward must be in [0, 1], got {self.score}")


@runtime_checkable
class Task(Protocol):
    """A task: examples by split, chat messages for an example, and a reward for a completion.

    Contract:
    - `examples(split)` returns the items of `split` ("train" or "test") in a fixed order; a missing
      dataset raises `tfgrpo.errors.DataError` whose message says where to put the files.
    - `messages(example)` returns the OpenAI-style chat messages WITHOUT any experience prior (the prior
      is applied by `tfgrpo.prior`, the same way in training and deployment).
    - `reward(example, completion)` never raises on model output: a failed parse is `Reward(0.0, reason)`.
    - `has_reference` says whether gold answers/solutions exist (used to learn from all-wrong groups).
    """

    name: str
    has_reference: bool
    splits: tuple[str, ...]

    def examples(self, split: str) -> list[Example]: ...

    def messages(self, example: Example) -> list[dict[str, Any]]: ...

    def reward(self, example: Example, completion: str) -> Reward: ...


@runtime_checkable
class ToolTask(Task, Protocol):
    """A task whose attempt is an agent episode (model turns and tool calls), not one completion.

    `rollout` runs one episode on `example` with the prior applied to its first messages by
    `apply_prior`, and returns a trajectory with `final_text` (what `reward` scores), `error`,
    `stop_reason`, token counts, `n_tool_calls` and `n_turns`. A budget stop raises
    `BudgetExceeded`; any other failure is recorded in `error`."""

    async def rollout(self, model: Any, example: Example, *, apply_prior: Any = None, temperature: float = 0.7,
                      max_tokens: int = 512, seed: int | None = None, stage: str = "rollout",
                      meta: dict[str, Any] | None = None) -> Any: ...


def is_tool_task(task: object) -> bool:
    """`isinstance(task, ToolTask)` without its cost: a runtime-checkable protocol's check walks all its
    members on every call (about 0.1 ms), and the hot paths ask once per rollout."""
    return callable(getattr(task, "rollout", None)) and isinstance(task, ToolTask)
