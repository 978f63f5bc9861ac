"""A trained arm whose library leaves every test prompt as `none`'s is not evaluated again: the check runs on
the real prior over a real DuckDB store, and the bench (real subprocesses, scripted model) writes the marker
instead of an item file, evaluates the arm as usual once its library changes a prompt, and the report shows
the arm as `= none` without claiming a difference."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from bench import learning_same as same
from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from tasks.registry import load_task
from tests.bench.test_bench_learning import DATA, ROOT, _env, bench, lines, ok
from tfgrpo.prior import Prior


def test_an_empty_library_leaves_every_prompt_unchanged_and_one_lesson_does_not(tmp_path):
    task = load_task("gsm8k", data_dir=DATA)
    items = task.examples("test")[:5]
    with ExperienceStore(tmp_path / "s.duckdb", embedder=HashEmbedder()) as store:
        store.ensure_library("empty")
        assert same.unchanged_prompts(task, items, Prior.from_store(store, "empty").apply)
        store.apply("one", [Op(kind=OpKind.ADD, text="When a price is given per dozen, divide by 12 first.")])
        assert not same.unchanged_prompts(task, items, Prior.from_store(store, "one").apply)
    assert same.unchanged_prompts(task, items, None)


def test_an_arm_whose_library_ended_empty_is_marked_not_evaluated_and_reported_as_none(tmp_path):
    ok(bench(tmp_path, "--arms", "none,paper"))
    folder = tmp_path / "out" / "gsm8k"
    learned = (folder / "paper.library.jsonl").read_text()
    assert learned.strip()
    # the committed export of a library that ended empty, on a fresh machine
    (folder / "paper.jsonl").unlink()
    (folder / "paper.library.jsonl").write_text("")
    shutil.rmtree(tmp_path / "scratch")
    out = ok(bench(tmp_path, "--arms", "none,paper"))
    assert "[paper] not evaluated: its prompt is byte-identical to none's on all 6 test items" in out
    assert out.strip().splitlines()[-1] == "status=complete arms=none:6/6,paper:6/6"
    assert not (folder / "paper.jsonl").exists()
    mark = json.loads(same.marker_path(folder, "paper").read_text())
    assert mark["same_as"] == "none" and mark["checked_items"] == 6

    res_md, readme = tmp_path / "results.md", tmp_path / "README.md"
    readme.write_text("# T\n<!-- learning-results:start -->\n<!-- learning-results:end -->\n")
    ok(subprocess.run([sys.executable, "bench/learning.py", "--report", "--out", str(tmp_path / "out"),
                       "--results", str(res_md), "--readme", str(readme)], cwd=ROOT, capture_output=True,
                      text=True, timeout=120, env=_env(tmp_path)))
    text = res_md.read_text()
    none_mean = sum(r["score"] for r in lines(folder / "none.jsonl")) / 6
    row = next(ln for ln in text.splitlines() if ln.startswith("| paper |"))
    assert f"= none: {none_mean:.3f}" in row and "not measured: every prompt = none's" in row
    assert "`= none`: the arm's library adds nothing" in text and "`= none`:" in readme.read_text()
    compare = json.loads((folder / "compare.json").read_text())
    assert [r["row"] for r in compare["rows"]] == ["none"]  # nothing paired with an arm that was not run

    # the library learns something again: the arm is evaluated as usual and the marker goes
    (folder / "paper.library.jsonl").write_text(learned)
    again = ok(bench(tmp_path, "--arms", "none,paper"))
    assert "not evaluated" not in again and len(lines(folder / "paper.jsonl")) == 6
    assert not same.marker_path(folder, "paper").exists()


def test_an_arm_evaluated_with_an_empty_library_is_reported_as_the_noise_floor():
    from bench.learning_report import _noise_line

    row = {"paired": {"delta": -0.003, "gained": 8, "lost": 9, "n": 300}}
    line = _noise_line(row, {"experiences": 0})
    assert "(-0.003, +8/-9 of 300) is the run-to-run noise" in line
    assert _noise_line(row, {"experiences": 3}) == "" and _noise_line({"paired": None}, {"experiences": 0}) == ""
