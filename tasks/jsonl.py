"""A user's own dataset: a JSONL file (or a folder with train.jsonl / test.jsonl).

Each line is an object with `question` and `answer`, optionally `id` and `solution` (other fields go to
`Example.meta`). A single file serves every split: pass one file to `train` and another to `eval`.
A folder serves `train.jsonl` as "train" and `test.jsonl` as "test".

The model is asked to put its final answer in `\\boxed{}`; the answer is taken from the last box, else
an `Answer:` line, else `#### x`, else the last line (not following the format). Rewards:
- `exact`: equal after case, whitespace, `$` and `\\text{}` are ignored;
- `numeric`: equal as numbers (relative tolerance 1e-6; commas, units, %, fractions forgiven);
- `math`: the math grader (numbers, then math-verify for LaTeX expressions) — the default;
- `regex`: the gold `answer` is a Python regular expression the whole answer must match (case-insensitive).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tasks import data, templates
from tasks.base import Example, Reward
from tasks.extract import MAX_ANSWER_CHARS, extract_any_answer, extract_math_answer
from tasks.grading import grade_exact, grade_math, grade_numeric, grade_regex
from tfgrpo_common.errors import ConfigError, DataError

REWARD_KINDS = ("exact", "numeric", "math", "regex")
_GRADERS = {"exact": grade_exact, "numeric": grade_numeric, "math": grade_math, "regex": grade_regex}


class JsonlTask:
    """Questions and answers from a user's JSONL file, scored by the chosen reward kind."""

    has_reference = True

    def __init__(self, data_file: str | Path, reward: str | None = None, name: str = "jsonl") -> None:
        kind = (reward or "math").lower()
        if kind not in REWARD_KINDS:
            raise ConfigError(f"unknown reward '{reward}' for task jsonl; use one of {', '.join(REWARD_KINDS)}")
        self.path = Path(data_file).expanduser()
        self.kind = kind
        self.name = name
        self.splits = ("train", "test")

    def _file_for(self, split: str) -> Path:
        if split not in self.splits:
            raise DataError(f"task '{self.name}' has splits train and test, not '{split}'")
        if self.path.is_dir():
            path = self.path / f"{split}.jsonl"
            if not path.is_file():
                raise DataError(f"{path} not found: a data folder needs {split}.jsonl (or pass one .jsonl file)")
            return path
        if not self.path.exists():
            raise DataError(f"{self.path} not found; pass the path of your .jsonl file with --data-file")
        return self.path

    def examples(self, split: str) -> list[Example]:
        path = self._file_for(split)
        rows = data.read_examples(path)
        if self.kind == "regex":
            _check_patterns(path, rows)
        return rows

    def messages(self, example: Example) -> list[dict[str, Any]]:
        return templates.chat("math_system", "math_user", question=example.question)

    def reward(self, example: Example, completion: str) -> Reward:
        try:
            extract = extract_math_answer if self.kind in ("math", "numeric") else extract_any_answer
            pred, format_ok = extract(completion or "")
            if pred is None:
                return Reward(0.0, "no answer found", None, False)
            if len(pred) > MAX_ANSWER_CHARS:
                return Reward(0.0, f"answer too long ({len(pred)} chars)", pred[:MAX_ANSWER_CHARS], format_ok)
            ok, reason = _GRADERS[self.kind](pred, example.answer)
            return Reward(1.0 if ok else 0.0, reason, pred, format_ok)
        except Exception as exc:  # noqa: BLE001 - grading never fails on model output
            return Reward(0.0, f"grading error: {type(exc).__name__}: {exc}", None, False)


def _check_patterns(path: Path, rows: list[Example]) -> None:
    """Every gold answer must compile as a regex; the error names the line (blank lines excluded)."""
    for i, ex in enumerate(rows, start=1):
        try:
            re.compile(ex.answer)
        except re.error as exc:
            raise DataError(
                f"{path}: example {i} (id {ex.id}): answer {ex.answer!r} is not a valid regular "
                f"expression ({exc}); fix it or use --reward exact"
            ) from None
