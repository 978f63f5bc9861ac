"""Loading datasets: the shared data folder, errors that say how to fix things, the registry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tasks import data
from tasks.base import Task
from tasks.qa import HotpotQATask, exact_match, f1_score, in_train_carve
from tasks.registry import get_task, task_names
from tfgrpo.errors import ConfigError, DataError, UnknownTaskError

SHARED = data.resolve_data_dir()


def need_shared(folder: str) -> Path:
    if SHARED is None or not (SHARED / folder).is_dir():
        pytest.skip(f"shared dataset '{folder}' is not on this machine")
    return SHARED


@pytest.mark.parametrize(
    ("name", "split", "folder", "count", "first_id"),
    [
        ("gsm8k", "train", "gsm8k", 7473, "gsm8k-train-0"),
        ("gsm8k", "test", "gsm8k", 1119, "gsm8k-test-0"),
        ("math500", "test", "math500", 500, "test/precalculus/807.json"),
        ("aime24", "test", "aime24", 30, "aime-2024-I-1"),
        ("aime25", "test", "aime25", 30, "aime-2025-I-1"),
        ("dapo", "train", "dapo_math_17k_sample", 500, "dapo17k-15"),
    ],
)
def test_shared_math_datasets(name: str, split: str, folder: str, count: int, first_id: str) -> None:
    need_shared(folder)
    task = get_task(name)
    assert isinstance(task, Task)
    rows = task.examples(split)
    assert len(rows) == count and rows[0].id == first_id
    assert all(r.question and r.answer for r in rows)
    assert task.reward(rows[0], f"\\boxed{{{rows[0].answer}}}").score == 1.0
    msgs = task.messages(rows[0])
    assert msgs[0]["role"] == "system" and "\\boxed{}" in msgs[0]["content"]
    assert msgs[1] == {"role": "user", "content": msgs[1]["content"]}
    assert rows[0].question in msgs[1]["content"]


def test_hotpotqa_carve_is_disjoint_and_stable() -> None:
    need_shared("hotpotqa_dev")
    task = get_task("hotpotqa")
    train, test = task.examples("train"), task.examples("test")
    assert len(train) + len(test) == 7405
    assert 900 < len(train) < 1300
    assert not {e.id for e in train} & {e.id for e in test}
    assert all(in_train_carve(e.id) for e in train)
    assert test[0].id == "hotpotqa-dev-0" and test[0].meta["type"] == "comparison"


def test_math500_hard_is_two_disjoint_carves_of_levels_3_to_5() -> None:
    need_shared("math500")
    task = get_task("math500-hard")
    train, test = task.examples("train"), task.examples("test")
    assert (len(train), len(test)) == (140, 227)  # 367 level 3-5 problems of MATH-500's 500
    assert not {e.id for e in train} & {e.id for e in test}
    assert not {" ".join(e.question.split()) for e in train} & {" ".join(e.question.split()) for e in test}
    assert {int(e.meta["level"]) for e in train + test} == {3, 4, 5}
    assert all(data.in_carve(e.id, 40) for e in train) and not any(data.in_carve(e.id, 40) for e in test)
    full = [e.id for e in get_task("math500").examples("test") if int(e.meta["level"]) >= 3]
    assert [e.id for e in test] == [i for i in full if not data.in_carve(i, 40)]  # file order kept


def test_a_carve_depends_on_ids_not_on_file_order(tmp_path: Path) -> None:
    rows = [{"id": f"p{i}", "question": f"q{i}", "answer": str(i), "level": 3 + i % 3} for i in range(60)]
    for name, ordered in (("a", rows), ("b", rows[::-1])):
        (tmp_path / name / "math500").mkdir(parents=True)
        (tmp_path / name / "math500" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ordered))
    a, b = get_task("math500-hard", data_dir=tmp_path / "a"), get_task("math500-hard", data_dir=tmp_path / "b")
    for split in ("train", "test"):
        assert {e.id for e in a.examples(split)} == {e.id for e in b.examples(split)}
    assert 10 < len(a.examples("train")) < 40 and len(a.examples("train")) + len(a.examples("test")) == 60


def test_math500_hard_needs_levels_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "math500").mkdir()
    lines = [{"id": "x1", "question": "1+1?", "answer": "2", "level": 3}, {"id": "x2", "question": "2+2?", "answer": "4"}]
    (tmp_path / "math500" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(DataError, match="x2 has no 'level'"):
        get_task("math500-hard", data_dir=tmp_path).examples("test")
    lines[1]["level"] = "hard"
    (tmp_path / "math500" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(DataError, match="not a number"):
        get_task("math500-hard", data_dir=tmp_path).examples("train")


def test_test_only_and_train_only_splits_explain() -> None:
    with pytest.raises(DataError, match="dapo"):
        get_task("aime24", data_dir="/nonexistent").examples("train")
    with pytest.raises(DataError, match="aime24"):
        get_task("dapo", data_dir="/nonexistent").examples("test")
    with pytest.raises(DataError, match="validation"):
        get_task("gsm8k", data_dir="/nonexistent").examples("validation")


@pytest.mark.parametrize(
    ("name", "hf"),
    [("gsm8k", "openai/gsm8k"), ("math500", "HuggingFaceH4/MATH-500"), ("aime24", "Maxwell-Jia/AIME_2024"),
     ("aime25", "yentinglin/aime_2025"), ("dapo", "BytedTsinghua-SIA/DAPO-Math-17k"),
     ("hotpotqa", "hotpotqa/hotpot_qa")],
)
def test_missing_dataset_says_where_and_how(tmp_path: Path, name: str, hf: str) -> None:
    task = get_task(name, data_dir=tmp_path)
    with pytest.raises(DataError) as err:
        task.examples(task.splits[0])
    assert str(tmp_path) in str(err.value) and hf in str(err.value)


def test_env_var_and_arg_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "env" / "aime24").mkdir(parents=True)
    (tmp_path / "env" / "aime24" / "test.jsonl").write_text('{"question": "q", "answer": "1"}\n')
    monkeypatch.setenv("TFGRPO_DATA", str(tmp_path / "env"))
    assert [e.id for e in get_task("aime24").examples("test")] == ["test-0"]
    with pytest.raises(DataError):
        get_task("aime24", data_dir=tmp_path / "other").examples("test")


def test_malformed_jsonl_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n\n{"question": "b", "answer": \n')
    with pytest.raises(DataError, match=rf"{path}:3: malformed JSON"):
        data.read_examples(path)
    path.write_text('{"question": "a"}\n')
    with pytest.raises(DataError, match=rf"{path}:1: missing field 'answer'"):
        data.read_examples(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError, match=rf"{path}:1: expected a JSON object"):
        data.read_examples(path)
    path.write_text("\n")
    with pytest.raises(DataError, match="no examples"):
        data.read_examples(path)


def test_cache_follows_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"id": 7, "question": "q", "answer": 3, "solution": "s", "x": 1}) + "\n")
    first = data.read_examples(path)
    assert first[0].id == "7" and first[0].answer == "3" and first[0].meta == {"x": 1}
    assert data.read_examples(path) == first
    path.write_text('{"question": "q2", "answer": "4"}\n')
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert data.read_examples(path)[0].question == "q2"


def test_unknown_task_lists_names() -> None:
    with pytest.raises(UnknownTaskError) as err:
        get_task("gsm9k")
    for name in task_names():
        assert name in str(err.value)


def test_registry_argument_errors(tmp_path: Path) -> None:
    assert set(task_names()) >= {"arith", "gsm8k", "math500", "aime24", "aime25", "dapo", "hotpotqa", "jsonl"}
    with pytest.raises(ConfigError, match="data-file"):
        get_task("jsonl")
    with pytest.raises(ConfigError, match="only to task 'jsonl'"):
        get_task("gsm8k", data_file=tmp_path / "x.jsonl")
    with pytest.raises(ConfigError, match="math reward"):
        get_task("gsm8k", reward="exact")
    with pytest.raises(ConfigError, match="f1"):
        get_task("hotpotqa", reward="bleu")
    assert get_task("GSM8K").name == "gsm8k"


def test_qa_metrics_and_reward() -> None:
    assert exact_match("The Eiffel Tower!", "eiffel tower") == 1.0
    assert f1_score("Chief of Protocol of the US", "Chief of Protocol") == pytest.approx(2 * 0.6 / 1.6)
    assert f1_score("yes", "no") == 0.0 and f1_score("no", "no") == 1.0
    assert f1_score("", "Paris") == 0.0
    from tasks.base import Example

    ex = Example("h", "Who?", "Chief of Protocol")
    f1_task, em_task = HotpotQATask(), HotpotQATask(metric="em")
    partial = "reasoning...\nAnswer: Protocol chief"
    assert f1_task.reward(ex, partial).score == pytest.approx(0.8)
    assert em_task.reward(ex, partial).score == 0.0
    assert "f1=0.80" in em_task.reward(ex, partial).reason
    assert f1_task.reward(ex, "Answer: chief of protocol.").score == 1.0
    assert f1_task.reward(ex, "").reason == "no answer found"
    assert f1_task.reward(ex, "Answer: " + "x" * 5000).score == 0.0
    msgs = f1_task.messages(ex)
    assert "Answer:" in msgs[0]["content"] and "Who?" in msgs[1]["content"]
