"""The built-in `arith` task: needs no downloaded data, so the demo runs on a fresh machine.

Its problems are short multi-step arithmetic word problems made by `tasks.arith.generate` from fixed
seeds and shipped as `tasks/builtin/arith_train.jsonl` and `arith_test.jsonl` (the files are the
source of truth; `python -m tasks.builtin` rewrites them and a test checks they still match the
generator). The test problems are generated first; no train question repeats a test question.
Answers are positive integers, graded like the math tasks (`\\boxed{}` answer, numeric comparison).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tasks import arith, data, templates
from tasks.base import Example, Reward
from tasks.math import check_split, math_reward
from tfgrpo_common.errors import DataError

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
SEEDS = {"test": 20250102, "train": 20250101}
SIZES = {"test": 200, "train": 200}


def generate_split(split: str) -> list[dict[str, Any]]:
    """The rows of a split exactly as shipped (ids included), made from the fixed seeds."""
    test = arith.generate(SIZES["test"], SEEDS["test"])
    rows = test
    if split == "train":
        rows = arith.generate(SIZES["train"], SEEDS["train"], exclude={str(r["question"]) for r in test})
    return [{"id": f"arith-{split}-{i:03d}", **row} for i, row in enumerate(rows)]


def split_path(split: str) -> Path:
    return BUILTIN_DIR / f"arith_{split}.jsonl"


class ArithTask:
    """Built-in multi-step arithmetic word problems (train 200 / test 200), graded 1/0."""

    name = "arith"
    has_reference = True
    splits = ("train", "test")

    def examples(self, split: str) -> list[Example]:
        check_split(self.name, self.splits, split)
        path = split_path(split)
        if not path.is_file():
            raise DataError(
                f"built-in data file {path} is missing (a broken install?); reinstall tfgrpo or "
                f"recreate it with `python -m tasks.builtin`"
            )
        return data.read_examples(path)

    def messages(self, example: Example) -> list[dict[str, Any]]:
        return templates.chat("math_system", "math_user", question=example.question)

    def reward(self, example: Example, completion: str) -> Reward:
        return math_reward(example, completion)


def write_files() -> list[Path]:
    """(Re)write the shipped JSONL files from the generator."""
    BUILTIN_DIR.mkdir(parents=True, exist_ok=True)
    out = []
    for split in ("train", "test"):
        path = split_path(split)
        lines = [json.dumps(row, ensure_ascii=False) for row in generate_split(split)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out.append(path)
    return out


if __name__ == "__main__":  # pragma: no cover
    for p in write_files():
        print(p, file=sys.stderr)
