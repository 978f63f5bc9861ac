"""Math word problems and competition math: gsm8k, math500, math500-hard, aime24, aime25, dapo.

`math500-hard` is MATH-500's levels 3-5 (367 problems) split in two by a fixed carve of the ids
(`tasks.data.in_carve`): "train" is about 40% of them, "test" the rest. Training and its gate then draw
from the same distribution as the test items and never from them, which a test-only dataset cannot give
(training on 'dapo' and testing on 'math500' crosses distributions).

Every task asks for step-by-step reasoning with the final answer in `\\boxed{}` and is scored 1/0 by
`math_reward`: the extracted answer (see `tasks.extract`) is compared with the gold answer as a
number when both are plain numbers, and with math-verify otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks import data, templates
from tasks.base import Example, Reward
from tasks.extract import extract_math_answer
from tasks.grading import grade_math
from tfgrpo_common.errors import DataError


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset's splits live under the data folder and how users online can get it."""

    name: str
    folders: tuple[str, ...]
    split_files: dict[str, tuple[str, ...]]
    hf_name: str
    suggest_train: str = ""  # hint shown when "train" is asked of a test-only dataset
    levels: tuple[int, ...] = ()  # keep only items whose "level" is one of these (MATH); () keeps all
    train_percent: int = 0  # > 0: "train" and "test" are disjoint carves of the "test" file

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", "test") if self.train_percent else tuple(self.split_files)


SPECS: dict[str, DatasetSpec] = {
    "gsm8k": DatasetSpec(
        "gsm8k", ("gsm8k",), {"train": ("train.jsonl",), "test": ("test.jsonl",)},
        "openai/gsm8k (config 'main')",
    ),
    "math500": DatasetSpec(
        "math500", ("math500",), {"test": ("test.jsonl",)}, "HuggingFaceH4/MATH-500",
        "train on 'dapo' (or 'gsm8k') and evaluate on 'math500'",
    ),
    "math500-hard": DatasetSpec(
        "math500-hard", ("math500",), {"test": ("test.jsonl",)}, "HuggingFaceH4/MATH-500",
        levels=(3, 4, 5), train_percent=40,
    ),
    "aime24": DatasetSpec(
        "aime24", ("aime24",), {"test": ("test.jsonl",)}, "Maxwell-Jia/AIME_2024",
        "train on 'dapo' and evaluate on 'aime24'",
    ),
    "aime25": DatasetSpec(
        "aime25", ("aime25",), {"test": ("test.jsonl",)}, "yentinglin/aime_2025",
        "train on 'dapo' and evaluate on 'aime25'",
    ),
    "dapo": DatasetSpec(
        "dapo", ("dapo_math_17k_sample", "dapo"), {"train": ("train_sample500.jsonl", "train.jsonl")},
        "BytedTsinghua-SIA/DAPO-Math-17k",
    ),
}


def math_reward(example: Example, completion: str) -> Reward:
    """1.0 when the completion's final answer equals the gold answer, else 0.0 with the reason."""
    try:
        pred, format_ok = extract_math_answer(completion or "")
        if pred is None:
            return Reward(0.0, "no answer found", None, False)
        ok, reason = grade_math(pred, example.answer)
        if not format_ok:
            reason += " (no \\boxed{} answer; used a fallback)"
        return Reward(1.0 if ok else 0.0, reason, pred, format_ok)
    except Exception as exc:  # noqa: BLE001 - grading never fails on model output
        return Reward(0.0, f"grading error: {type(exc).__name__}: {exc}", None, False)


def check_split(name: str, splits: tuple[str, ...], split: str, hint: str = "") -> None:
    """Raise a `DataError` naming the available splits when `split` is not one of them."""
    if split in splits:
        return
    extra = f"; {hint}" if hint else ""
    raise DataError(f"task '{name}' has no '{split}' split (it has {', '.join(splits)}){extra}")


def _level(example: Example, path: Path) -> int | None:
    level = example.meta.get("level")
    if level is None:
        raise DataError(f"{path}: item {example.id} has no 'level' field; this task keeps MATH levels only, "
                        "so every line needs one (MATH-500's own file has it)")
    try:
        return int(level)
    except (TypeError, ValueError):
        raise DataError(f"{path}: item {example.id} has level {level!r}, not a number; fix that line") from None


class MathTask:
    """A math dataset read from `<data dir>/<folder>/<split>.jsonl`, graded by `math_reward`."""

    has_reference = True

    def __init__(self, spec: DatasetSpec, data_dir: str | Path | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.splits = spec.splits
        self.data_dir = data_dir

    def examples(self, split: str) -> list[Example]:
        hint = self.spec.suggest_train if split == "train" else ""
        if split == "test" and "test" not in self.splits:
            hint = "evaluate on a held-out task such as 'aime24', 'aime25' or 'math500'"
        check_split(self.name, self.splits, split, hint)
        spec = self.spec
        path = data.find_dataset_file(
            self.data_dir, spec.folders, spec.split_files["test" if spec.train_percent else split],
            hf_name=spec.hf_name, task=self.name,
        )
        items = data.read_examples(path)
        if spec.levels:
            items = [ex for ex in items if _level(ex, path) in spec.levels]
        if spec.train_percent:
            items = [ex for ex in items if data.in_carve(ex.id, spec.train_percent) == (split == "train")]
        return items

    def messages(self, example: Example) -> list[dict[str, Any]]:
        return templates.chat("math_system", "math_user", question=example.question)

    def reward(self, example: Example, completion: str) -> Reward:
        return math_reward(example, completion)
