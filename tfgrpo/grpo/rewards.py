"""Adapter from our `Task.reward(example, completion) -> Reward` to TRL's reward-function signature.

TRL (1.16) calls `reward_func(prompts=..., completions=..., completion_ids=..., **columns)` once per
generation batch, where every dataset column except `prompt` arrives as a list aligned with the
completions (so the `example_id` column tells which question each completion answers), plus
`trainer_state`, `log_extra`, `log_metric`. With conversational prompts a completion is a list of
message dicts (`[{"role": "assistant", "content": "..."}]`); with plain prompts it is a string.
No torch here: the dataset rows are plain dicts (`build_rows`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from tasks.base import Example, Task

ApplyPrior = Callable[[list[dict]], list[dict]]


def completion_text(completion: Any) -> str:
    """The text of one TRL completion: a string, or the assistant message(s) of a conversation."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, (list, tuple)):
        parts = [m for m in completion if isinstance(m, dict) and m.get("role", "assistant") == "assistant"]
        return "".join(_content(m.get("content")) for m in parts)
    return str(completion)


def _content(content: Any) -> str:
    if isinstance(content, list):  # multimodal-style content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def build_rows(task: Task, examples: Sequence[Example], apply_prior: ApplyPrior | None = None) -> list[dict]:
    """Dataset rows for TRL: the task's chat messages as a conversational `prompt` and the item's id."""
    rows = []
    for ex in examples:
        messages = task.messages(ex)
        if apply_prior is not None:
            messages = apply_prior(messages)
        rows.append({"prompt": messages, "example_id": ex.id})
    return rows


class TaskReward:
    """A TRL reward function that scores each completion with `task.reward` (in [0, 1]).

    A reward that raises (a task bug, never expected) scores 0 and is counted in `errors`; an unknown
    `example_id` is a wiring bug and raises. `stats()` summarises every completion scored so far.
    """

    def __init__(self, task: Task, examples: Sequence[Example]) -> None:
        self.task = task
        self.by_id = {ex.id: ex for ex in examples}
        self.__name__ = f"{task.name}_reward"  # TRL logs rewards/<name>/mean
        self.scores: list[float] = []
        self.format_ok = 0
        self.errors: list[str] = []

    def __call__(self, prompts: list[Any] | None = None, completions: list[Any] | None = None, *,
                 example_id: list[str] | None = None, log_metric: Callable | None = None,
                 **_: Any) -> list[float]:
        completions = completions or []
        if example_id is None or len(example_id) != len(completions):
            raise ValueError("the reward needs the dataset column `example_id` aligned with the completions "
                             "(build the dataset with tfgrpo.grpo.rewards.build_rows)")
        out = [self.score(eid, comp) for eid, comp in zip(example_id, completions)]
        if log_metric is not None and out:
            log_metric(f"{self.__name__}/format_rate", self.format_ok / max(1, len(self.scores)))
        return out

    def score(self, example_id: str, completion: Any) -> float:
        if example_id not in self.by_id:
            raise KeyError(f"reward asked about unknown example id {example_id!r}")
        try:
            reward = self.task.reward(self.by_id[example_id], completion_text(completion))
            value, ok = float(reward.score), bool(reward.format_ok)
        except Exception as exc:  # failures are data: score 0, keep the reason
            self.errors.append(f"{example_id}: {type(exc).__name__}: {exc}")
            value, ok = 0.0, False
        self.scores.append(value)
        self.format_ok += int(ok)
        return value

    def stats(self) -> dict[str, Any]:
        n = len(self.scores)
        return {"completions": n, "mean_reward": (sum(self.scores) / n) if n else 0.0,
                "format_rate": (self.format_ok / n) if n else 0.0, "errors": len(self.errors),
                "first_errors": self.errors[:3]}
