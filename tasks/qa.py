"""Closed-book HotpotQA: answer multi-hop questions from memory; scored by token F1 or exact match.

Splits: the distributed data is HotpotQA's dev set (7,405 questions, no context paragraphs). A fixed
~15% of it is carved out as "train" by hashing each example id (sha256(id) mod 100 < 15), and "test"
is the rest, so the two never overlap and the carve does not depend on file order.

Reward: token F1 by default (a dense signal that tells "Paris, France" from "London"; group
advantages need differences between answers), or exact match with `metric="em"`. Both follow the
HotpotQA evaluation script: lower-case, drop punctuation and articles, and when either answer is
yes / no / noanswer the F1 is 0 unless they agree exactly. The reason string always reports both.
"""

from __future__ import annotations

import collections
import re
import string
from pathlib import Path
from typing import Any

from tasks import data, templates
from tasks.base import Example, Reward
from tasks.extract import MAX_ANSWER_CHARS, extract_qa_answer
from tfgrpo_common.errors import ConfigError, DataError

TRAIN_PERCENT = 15
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, strip punctuation and articles, collapse whitespace (HotpotQA/SQuAD style)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match(pred: str, gold: str) -> float:
    return float(normalize_answer(pred) == normalize_answer(gold))


def f1_score(pred: str, gold: str) -> float:
    """Token-level F1 between normalized answers."""
    p, g = normalize_answer(pred), normalize_answer(gold)
    special = ("yes", "no", "noanswer")
    if (p in special or g in special) and p != g:
        return 0.0
    pt, gt = p.split(), g.split()
    common = collections.Counter(pt) & collections.Counter(gt)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pt), same / len(gt)
    return 2 * precision * recall / (precision + recall)


def in_train_carve(example_id: str) -> bool:
    """Whether an id falls in the fixed "train" carve of the dev set."""
    return data.in_carve(example_id, TRAIN_PERCENT)


class HotpotQATask:
    """Closed-book HotpotQA (dev set) with a deterministic train carve; reward F1 (or EM)."""

    name = "hotpotqa"
    has_reference = True
    splits = ("train", "test")
    folders = ("hotpotqa_dev", "hotpotqa")
    files = ("dev.jsonl",)
    hf_name = "hotpotqa/hotpot_qa (config 'distractor', split 'validation')"

    def __init__(self, data_dir: str | Path | None = None, metric: str | None = None) -> None:
        metric = (metric or "f1").lower()
        if metric not in ("f1", "em"):
            raise ConfigError(f"hotpotqa reward must be 'f1' or 'em', got '{metric}'")
        self.data_dir = data_dir
        self.metric = metric

    def examples(self, split: str) -> list[Example]:
        if split not in self.splits:
            raise DataError(f"task '{self.name}' has splits {list(self.splits)}, not '{split}'")
        path = data.find_dataset_file(
            self.data_dir, self.folders, self.files, hf_name=self.hf_name, task=self.name
        )
        want_train = split == "train"
        return [ex for ex in data.read_examples(path) if in_train_carve(ex.id) == want_train]

    def messages(self, example: Example) -> list[dict[str, Any]]:
        return templates.chat("qa_system", "qa_user", question=example.question)

    def reward(self, example: Example, completion: str) -> Reward:
        pred, format_ok = extract_qa_answer(completion or "")
        if pred is None:
            return Reward(0.0, "no answer found", None, False)
        if len(pred) > MAX_ANSWER_CHARS:
            return Reward(0.0, f"answer too long ({len(pred)} chars)", pred[:MAX_ANSWER_CHARS], format_ok)
        em, f1 = exact_match(pred, example.answer), f1_score(pred, example.answer)
        score = f1 if self.metric == "f1" else em
        verdict = "correct" if em == 1.0 else ("partial" if score > 0 else "wrong")
        reason = f"{verdict}: {pred!r} vs {example.answer!r} (em={em:.0f}, f1={f1:.2f})"
        return Reward(float(score), reason, pred, format_ok)
