"""A user's own JSONL task with each reward kind, and the built-in `arith` task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks import arith
from tasks.base import Example, Task
from tasks.builtin import ArithTask, generate_split, split_path
from tasks.registry import get_task
from tfgrpo.errors import ConfigError, DataError


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def qa_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "mine.jsonl", [
        {"id": "a", "question": "Capital of France?", "answer": "Paris"},
        {"question": "Half of 3?", "answer": "1.5", "solution": "3/2"},
        {"question": "Largest mammal?", "answer": "(the )?blue whale"},
    ])


def test_jsonl_examples_both_splits(qa_file: Path) -> None:
    task = get_task("jsonl", data_file=qa_file, reward="exact")
    assert isinstance(task, Task)
    rows = task.examples("train")
    assert [r.id for r in rows] == ["a", "mine-1", "mine-2"] and rows[1].solution == "3/2"
    assert task.examples("test") == rows
    assert "\\boxed{}" in task.messages(rows[0])[1]["content"]


@pytest.mark.parametrize(
    ("kind", "index", "completion", "expected"),
    [
        ("exact", 0, "It is \\boxed{paris}", 1.0),
        ("exact", 0, "Answer: Paris.", 1.0),
        ("exact", 0, "\\boxed{Lyon}", 0.0),
        ("numeric", 1, "\\boxed{3/2}", 1.0),
        ("numeric", 1, "so it is 1.50", 1.0),
        ("numeric", 1, "\\boxed{1.4}", 0.0),
        ("math", 1, "\\boxed{\\frac{3}{2}}", 1.0),
        ("math", 1, "\\boxed{\\frac{1}{2}}", 0.0),
        ("regex", 2, "\\boxed{The Blue Whale}", 1.0),
        ("regex", 2, "Answer: blue whale", 1.0),
        ("regex", 2, "\\boxed{orca}", 0.0),
    ],
)
def test_jsonl_reward_kinds(qa_file: Path, kind: str, index: int, completion: str, expected: float) -> None:
    task = get_task("jsonl", data_file=qa_file, reward=kind)
    ex = task.examples("test")[index]
    assert task.reward(ex, completion).score == expected


def test_jsonl_no_answer_and_garbage(qa_file: Path) -> None:
    task = get_task("jsonl", data_file=qa_file, reward="regex")
    ex = task.examples("test")[2]
    assert task.reward(ex, "").reason == "no answer found"
    assert task.reward(ex, "\\boxed{" + "a" * 999 + "}").score == 0.0
    assert task.reward(ex, "x" * 200_000).score == 0.0


def test_jsonl_errors(tmp_path: Path, qa_file: Path) -> None:
    with pytest.raises(ConfigError, match="exact, numeric, math, regex"):
        get_task("jsonl", data_file=qa_file, reward="fuzzy")
    with pytest.raises(DataError, match="not found"):
        get_task("jsonl", data_file=tmp_path / "absent.jsonl").examples("train")
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "(unclosed"}])
    with pytest.raises(DataError, match="not a valid regular expression"):
        get_task("jsonl", data_file=bad, reward="regex").examples("train")
    assert get_task("jsonl", data_file=bad, reward="exact").examples("train")[0].answer == "(unclosed"


def test_jsonl_folder_splits(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", [{"question": "1+1?", "answer": "2"}])
    task = get_task("jsonl", data_file=tmp_path, reward="numeric")
    assert task.examples("train")[0].id == "train-0"
    with pytest.raises(DataError, match="test.jsonl"):
        task.examples("test")


def test_arith_shipped_files_match_generator() -> None:
    for split in ("train", "test"):
        shipped = [json.loads(line) for line in split_path(split).read_text().splitlines()]
        assert shipped == generate_split(split)


def test_arith_task_is_deterministic_and_sane() -> None:
    task = get_task("arith")
    train, test = task.examples("train"), task.examples("test")
    assert len(train) == 200 and len(test) == 200
    assert not {e.question for e in train} & {e.question for e in test}
    assert task.examples("test") == ArithTask().examples("test")
    for ex in train + test:
        assert int(ex.answer) > 0 and ex.solution and ex.meta["template"]
        assert ex.solution.rstrip(".").endswith(ex.answer)
        assert task.reward(ex, f"... \\boxed{{{ex.answer}}}").score == 1.0
    templates = {e.meta["template"] for e in test}
    assert len(templates) == len(arith.TEMPLATES)


def test_arith_generator_seeded() -> None:
    assert arith.generate(30, seed=5) == arith.generate(30, seed=5)
    assert arith.generate(30, seed=5) != arith.generate(30, seed=6)
    first = arith.generate(10, seed=5)
    assert not {r["question"] for r in arith.generate(10, seed=5, exclude={str(first[0]["question"])})} & {
        first[0]["question"]
    }


def test_arith_reward_and_messages() -> None:
    task = ArithTask()
    ex = Example("a", "q?", "12")
    assert task.reward(ex, "So \\boxed{12}.").reason == "correct: 12 == 12"
    assert task.reward(ex, "\\boxed{13}").score == 0.0
    msgs = task.messages(ex)
    assert [m["role"] for m in msgs] == ["system", "user"] and msgs[1]["content"].startswith("q?")
    with pytest.raises(DataError, match="dev"):
        task.examples("dev")
