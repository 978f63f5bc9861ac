"""A trained arm whose library leaves every test prompt as `none`'s is not evaluated again: the check runs on
the real prior over a real DuckDB store, and the bench (real subprocesses, scripted model) writes the marker
instead of an item file, evaluates the arm as usual once its library changes a prompt, and the report shows
the arm as `= none` without claiming a difference."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from bench import learning_same as same
from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from tasks.registry import load_task
from tests.bench.learning_cli import DATA, HAVE_GEPA, ROOT, _env, bench, lines, ok
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
    assert "`= none`: the arm changes no test prompt" in text and "`= none`:" in readme.read_text()
    compare = json.loads((folder / "compare.json").read_text())
    assert [r["row"] for r in compare["rows"]] == ["none"]  # nothing paired with an arm that was not run

    # the library learns something again: the arm is evaluated as usual and the marker goes
    (folder / "paper.library.jsonl").write_text(learned)
    again = ok(bench(tmp_path, "--arms", "none,paper"))
    assert "not evaluated" not in again and len(lines(folder / "paper.jsonl")) == 6
    assert not same.marker_path(folder, "paper").exists()


@pytest.mark.skipif(not HAVE_GEPA, reason="gepa is not installed")
def test_a_gepa_run_whose_best_prompt_is_the_seed_prompt_is_marked_not_evaluated(tmp_path):
    ok(bench(tmp_path, "--arms", "none,gepa"))
    folder = tmp_path / "out" / "gsm8k"
    meta_file = folder / "gepa.train.json"
    meta = json.loads(meta_file.read_text())
    # the scripted model's GEPA keeps the seed prompt or tunes it: either way the arm's files say which
    assert same.marker_path(folder, "gepa").is_file() == meta["is_seed"] != (folder / "gepa.jsonl").is_file()
    (folder / "gepa.jsonl").unlink(missing_ok=True)
    meta_file.write_text(json.dumps({**meta, "prompt": meta["seed_prompt"] + " Show your work."}))
    ok(bench(tmp_path, "--arms", "none,gepa"))  # a tuned prompt is evaluated
    assert len(lines(folder / "gepa.jsonl")) == 6 and not same.marker_path(folder, "gepa").exists()
    (folder / "gepa.jsonl").unlink()
    meta_file.write_text(json.dumps({**meta, "prompt": meta["seed_prompt"], "is_seed": True}))
    out = ok(bench(tmp_path, "--arms", "none,gepa"))  # the seed prompt is none's prompt
    assert "[gepa] not evaluated: its prompt is byte-identical to none's on all 6 test items" in out
    assert not (folder / "gepa.jsonl").exists() and same.marker_path(folder, "gepa").is_file()


def test_an_arm_evaluated_with_an_empty_library_is_reported_as_the_noise_floor():
    from bench.learning_report import _noise_line

    row = {"paired": {"delta": -0.003, "gained": 8, "lost": 9, "n": 300}}
    line = _noise_line(row, {"experiences": 0})
    assert "(-0.003, +8/-9 of 300) is the run-to-run noise" in line
    assert _noise_line(row, {"experiences": 3}) == "" and _noise_line({"paired": None}, {"experiences": 0}) == ""
