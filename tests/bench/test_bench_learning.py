"""The learning bench end to end on the scripted model, as real subprocesses on a real DuckDB file (control
flow only; the real runs are committed under bench/out/learning/): every arm writes its files and the report
has every row; a rerun recomputes nothing; an arm still being evaluated does not cut the compare of the
complete ones; other settings, overlapping items and an arm whose TrainConfig fields are missing are refused
at start. Stops and resumes: test_bench_learning_resume.py."""

from __future__ import annotations

import json
import shutil

import pytest

from bench.learning_arms import ARMS
from tests.bench.learning_cli import (DATA, HAVE_OURS, ablation, bench, lines, needs_gsm8k, ok, report, results,
                                      runnable_arms)
from tfgrpo.config import TrainConfig

pytestmark = needs_gsm8k

RESULTS_MD = """# Benchmark results

| bench | figures |
|---|---|
| store | `topk=1` |

## Learning effect — 2026-01-01 00:00 UTC (old)

| variant | mean@k |
|---|---|
| baseline | 0.100 |

## Output tails

kept
"""


def test_every_arm_writes_its_files_and_the_report_has_every_row(tmp_path):
    arms = runnable_arms()
    out = ok(bench(tmp_path, "--arms", ",".join(arms)))
    assert out.strip().splitlines()[-1].startswith("status=complete arms=none:6/6,paper:6/6")
    folder = tmp_path / "out" / "gsm8k"
    marked = [arm for arm in arms if (folder / f"{arm}.same-as-none.json").is_file()]
    for arm in marked:  # a gated library that every gate refused is empty, GEPA kept the seed prompt: none's prompts
        if ARMS[arm].kind == "gepa":
            assert json.loads((folder / "gepa.train.json").read_text())["is_seed"]
        else:
            assert ARMS[arm].kind == "train" and not (folder / f"{arm}.library.jsonl").read_text().strip()
        assert not (folder / f"{arm}.jsonl").exists()
    for arm in (a for a in arms if a not in marked):
        recs = lines(folder / f"{arm}.jsonl")
        assert len(recs) == (3 if ablation(arm) else 6) and len({r["id"] for r in recs}) == len(recs)
        assert {"id", "index", "score", "scores", "extracted", "finish_reasons", "prompt_tokens", "completion_tokens",
                "wall_s"} <= set(recs[0])
    meta = json.loads((folder / "paper.train.json").read_text())
    assert meta["llm_calls"] > 0 and meta["by_stage"]["rollout"] == 8 and meta["train_config"]["limit"] == 4
    assert {"prior", "prompt_tokens", "completion_tokens", "wall_s", "run_id", "learner_calls"} <= set(meta)
    assert (folder / "paper.library.jsonl").read_text().strip()
    assert meta["gate"] == []  # the paper arm has no gate
    if HAVE_OURS:  # every step of a gated arm has its decision in the export, with the ops it judged
        gate = json.loads((folder / "ours.train.json").read_text())["gate"]
        assert [g["step"] for g in gate] == [1, 2] and all(g["slice_items"] == 4 and g["ops"] for g in gate)
        assert all(isinstance(g["accepted"], bool) and 0 <= g["score_base"] <= 1 for g in gate)
        assert all(g["alpha"] == 0.1 and 0 < g["p_value"] <= 1 and g["gained"] + g["lost"] <= g["n_items"] <= 4
                   for g in gate)
    settings = json.loads((folder / "settings.json").read_text())
    assert settings["n"] == 6 and settings["max_tokens"] == 512 and settings["test_ids_sha"]

    res_md, readme = tmp_path / "results.md", tmp_path / "README.md"
    res_md.write_text(RESULTS_MD)
    readme.write_text("# T\n<!-- learning-results:start -->\nstale\n<!-- learning-results:end -->\nrest\n")
    report(tmp_path, res_md, readme)
    text, block = res_md.read_text(), readme.read_text()
    assert "(old)" not in text and "| store | `topk=1` |" in text and text.rstrip().endswith("kept")
    for arm in arms:
        assert f"| {arm} | {3 if ablation(arm) else 6} |" in text and f"| {arm} |" in block
    if HAVE_OURS:
        assert ("Gate (4 held-out train questions, proposed vs current library; kept if it gains with one-sided "
                "sign-test p <= 0.1):") in text and "step 2 " in text
    assert "stale" not in block and block.endswith("<!-- learning-results:end -->\nrest\n")
    compare = json.loads((folder / "compare.json").read_text())
    assert [r["row"] for r in compare["rows"]] == [a for a in ARMS if a in arms and a not in marked]  # table order
    assert compare["rows"][1]["cost"]["kind"] == "training-free"
    assert (folder / "compare.md").read_text().startswith("# tfgrpo compare: gsm8k")


def test_rerun_imports_the_exported_library_and_recomputes_nothing(tmp_path):
    ok(bench(tmp_path, "--arms", "none,paper"))
    folder = tmp_path / "out" / "gsm8k"
    first, meta = results(folder / "paper.jsonl"), (folder / "paper.train.json").read_text()
    again = ok(bench(tmp_path, "--arms", "none,paper"))
    assert "6/6 items already done, 0 to go" in again and "training train-paper" not in again
    assert len(lines(folder / "paper.jsonl")) == 6 and (folder / "paper.train.json").read_text() == meta
    # anyone with the committed files: no scratch DuckDB, the library imported from its export
    (folder / "paper.jsonl").unlink()
    shutil.rmtree(tmp_path / "scratch")
    fresh = ok(bench(tmp_path, "--arms", "paper"))
    assert "importing" in fresh and "training train-paper" not in fresh
    assert results(folder / "paper.jsonl") == first


def test_a_rerun_with_other_settings_is_refused_naming_the_key(tmp_path):
    ok(bench(tmp_path, "--arms", "none"))
    proc = bench(tmp_path, "--arms", "none", "--max-tokens", "256")
    assert proc.returncode == 2 and "max_tokens" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "n_train" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--bench", "math", "--n-train", "130", "--n-gate", "20"], "gate items overlap the training questions"),
    (["--train-split", "test"], "training questions overlap the test items"),
])
def test_overlapping_items_are_refused_at_start(tmp_path, args, message):
    if "math" in args and not (DATA / "math500").is_dir():
        pytest.skip("MATH-500 not found")
    proc = bench(tmp_path, "--arms", "none", *args)  # the later --bench/--n-train/--n-gate win over SMALL's
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not list((tmp_path / "out").glob("*/settings.json"))


def test_ours_refuses_while_train_config_lacks_its_fields_else_runs(tmp_path):
    proc = bench(tmp_path, "--arms", "none,ours")
    missing = [f for f in ("gate_items", "learn_examples", "gate_alpha") if f not in TrainConfig.model_fields]
    if missing:
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert f"TrainConfig.{missing[0]}" in proc.stderr and "'ours'" in proc.stderr
        assert not (tmp_path / "out").exists()  # refused before anything ran
    else:
        assert ok(proc).strip().splitlines()[-1] == "status=complete arms=none:6/6,ours:6/6"
        folder = tmp_path / "out" / "gsm8k"
        if (folder / "ours.same-as-none.json").is_file():  # every gate refused: the library is empty
            assert not (folder / "ours.library.jsonl").read_text().strip()
        else:
            assert len(lines(folder / "ours.jsonl")) == 6


def test_an_arm_still_being_evaluated_does_not_cut_the_compare_of_the_complete_arms(tmp_path):
    ok(bench(tmp_path, "--arms", "none,paper"))
    folder = tmp_path / "out" / "gsm8k"
    # retrieval has 2 of its 6 items so far (the run goes on in a later session)
    ok(bench(tmp_path, "--arms", "retrieval"))
    recs = (folder / "retrieval.jsonl").read_text().splitlines()
    (folder / "retrieval.jsonl").write_text("\n".join(recs[:2]) + "\n")
    (tmp_path / "results.md").write_text(RESULTS_MD)
    (tmp_path / "README.md").write_text("# T\n<!-- learning-results:start -->\n<!-- learning-results:end -->\n")
    report(tmp_path, tmp_path / "results.md", tmp_path / "README.md")
    compare = json.loads((folder / "compare.json").read_text())
    assert [r["row"] for r in compare["rows"]] == ["none", "paper"]
    assert "6 items" in (folder / "compare.md").read_text().splitlines()[0]
    assert "| retrieval | 2/6 partial |" in (tmp_path / "results.md").read_text()
