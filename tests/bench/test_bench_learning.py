"""The learning bench end to end on the scripted model, as real subprocesses on a real DuckDB file (control
flow only; the real runs are committed under bench/out/learning/): every arm writes its files and the report
has every row; a run killed mid-arm or stopped by its time budget resumes to the same per-item results as
an uninterrupted run without recomputing finished items; other settings, overlapping items and an arm whose
TrainConfig fields are missing are refused at start."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.learning_arms import ARMS
from tfgrpo.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("TFGRPO_DATA", ROOT.parent / "shared" / "data"))
SMALL = ["--bench", "gsm8k", "--model", "scripted", "--n", "6", "--n-ablation", "3", "--n-train", "4", "--n-gate", "4",
         "--group", "2", "--batch", "2"]
OURS_FIELDS = ("gate_items", "learn_lessons", "learn_examples")
HAVE_OURS = all(f in TrainConfig.model_fields for f in OURS_FIELDS)
HAVE_GEPA = importlib.util.find_spec("gepa") is not None

pytestmark = pytest.mark.skipif(not (DATA / "gsm8k").is_dir(), reason=f"GSM8K not found under {DATA}")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "TFGRPO_DATA": str(DATA), "TFGRPO_HOME": str(tmp_path / "home"),
            "TFGRPO_EMBED_MODEL": "hash", "TFGRPO_SCRIPTED_DELAY": "0", **extra}


def _cmd(base: Path, *args: str) -> list[str]:
    return [sys.executable, "bench/learning.py", *SMALL, "--out", str(base / "out"), "--scratch", str(base / "scratch"),
            *args]


def bench(base: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(base, *args), cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=_env(base, **env))


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def lines(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def results(path: Path) -> list[dict]:
    """Per-item results without the wall time (the only field that differs between runs)."""
    return sorted(({k: v for k, v in r.items() if k != "wall_s"} for r in lines(path)), key=lambda r: r["index"])


def runnable_arms() -> list[str]:
    arms = ["none", "paper", "retrieval"] + (["gepa"] if HAVE_GEPA else [])
    return arms + (["ours", "ours-lessons", "ours-examples"] if HAVE_OURS else [])


def ablation(arm: str) -> bool:
    return arm in ("ours-lessons", "ours-examples")


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
    ok(subprocess.run([sys.executable, "bench/learning.py", "--report", "--out", str(tmp_path / "out"),
                       "--results", str(res_md), "--readme", str(readme)], cwd=ROOT, capture_output=True,
                      text=True, timeout=120, env=_env(tmp_path)))
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
    import shutil

    shutil.rmtree(tmp_path / "scratch")
    fresh = ok(bench(tmp_path, "--arms", "paper"))
    assert "importing" in fresh and "training train-paper" not in fresh
    assert results(folder / "paper.jsonl") == first


def test_killed_run_resumes_to_the_uninterrupted_results(tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    ok(bench(ref, "--arms", "none,retrieval"))
    proc = subprocess.Popen(_cmd(cut, "--arms", "none,retrieval"), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env(cut, TFGRPO_SCRIPTED_DELAY="0.4"))
    path = cut / "out" / "gsm8k" / "none.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (path.is_file() and len(path.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done = len(path.read_text().splitlines())
    assert 2 <= done < 6, done
    out = ok(bench(cut, "--arms", "none,retrieval"))
    assert f"[none] {done}/6 items already done, {6 - done} to go" in out
    for arm in ("none", "retrieval"):
        recs = lines(cut / "out" / "gsm8k" / f"{arm}.jsonl")
        assert len(recs) == len({r["id"] for r in recs}) == 6  # nothing evaluated twice
        assert results(cut / "out" / "gsm8k" / f"{arm}.jsonl") == results(ref / "out" / "gsm8k" / f"{arm}.jsonl")


def test_time_budget_stops_cleanly_and_the_next_runs_finish_the_same_table(tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    ok(bench(ref, "--arms", "paper,none"))
    first = ok(bench(cut, "--arms", "paper,none", "--time-budget-min", "0.005", TFGRPO_SCRIPTED_DELAY="0.05"))
    assert "time budget" in first and first.strip().splitlines()[-1].startswith("status=partial")
    # 3 s slices: on a slow, loaded 2-core machine a 1.2 s slice could end before the run got past its start-up
    for _ in range(60):
        last = ok(bench(cut, "--arms", "paper,none", "--time-budget-min", "0.05", TFGRPO_SCRIPTED_DELAY="0.05"))
        if last.strip().splitlines()[-1].startswith("status=complete"):
            break
    else:
        pytest.fail("the sliced runs never completed")
    for arm in ("paper", "none"):
        assert results(cut / "out" / "gsm8k" / f"{arm}.jsonl") == results(ref / "out" / "gsm8k" / f"{arm}.jsonl")
    texts = [[r["text"] for r in lines(d / "out" / "gsm8k" / "paper.library.jsonl")] for d in (ref, cut)]
    assert texts[0] == texts[1]
    sessions = lines(cut / "out" / "gsm8k" / "sessions.jsonl")
    assert sessions[0]["status"] == "partial" and sessions[-1]["status"] == "complete"
    assert all(len(s["code"].split("+")[0]) >= 7 for s in sessions)  # the commit each slice ran


def test_a_training_stopped_mid_way_moves_to_another_machine_with_its_results(tmp_path):
    """Each slice runs on a fresh machine: the scratch folder is gone, only `--out` (the committed files)
    travels. The packed training state resumes the run, and the table equals an uninterrupted run's."""
    import shutil

    ref, cut = tmp_path / "ref", tmp_path / "cut"
    ok(bench(ref, "--arms", "paper"))
    state = cut / "out" / "gsm8k" / "train-state.tar.gz"
    packed = unpacked = 0
    for _ in range(60):
        shutil.rmtree(cut / "scratch", ignore_errors=True)  # a new machine: no scratch, no store, no checkpoints
        # Each scripted call sleeps 0.5 s, so the training (8 rounds of calls, >= 4 s) cannot finish inside one
        # 3 s slice however fast the machine is: a stop mid-way is certain, not a matter of timing (and a slow
        # machine still gets past its start-up within a slice).
        out = ok(bench(cut, "--arms", "paper", "--time-budget-min", "0.05", TFGRPO_SCRIPTED_DELAY="0.5"))
        unpacked += "unpacked the training state" in out
        if "packed into" in out:
            packed += 1
            assert state.is_file()
        if out.strip().splitlines()[-1].startswith("status=complete"):
            break
    else:
        pytest.fail("the sliced runs never completed")
    assert packed >= 1, "the time budget never stopped the training mid-way: the test proves nothing"
    assert unpacked == packed  # every slice after a stop resumed from the carried state
    assert not state.exists(), "the carried state is dropped once every training arm has exported its library"
    assert results(cut / "out" / "gsm8k" / "paper.jsonl") == results(ref / "out" / "gsm8k" / "paper.jsonl")
    texts = [[r["text"] for r in lines(d / "out" / "gsm8k" / "paper.library.jsonl")] for d in (ref, cut)]
    assert texts[0] == texts[1]


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


def test_a_training_that_cannot_reach_its_model_stops_cleanly_with_its_state_packed(tmp_path):
    """A training that ends for another reason than the time budget (here: every call refused, so the run's
    circuit breaker stops it) is a one-line error and exit 1, not a traceback, and its state is packed."""
    args = [a if a != "scripted" else "local:smollm2" for a in _cmd(tmp_path, "--arms", "paper")]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=_env(tmp_path, TFGRPO_LOCAL_API_BASE="http://127.0.0.1:9/v1"))
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "could not reach the model" in proc.stderr
    assert "rerun the same command to resume" in proc.stdout and "packed into" in proc.stdout
    assert (tmp_path / "out" / "gsm8k" / "train-state.tar.gz").is_file()
    assert proc.stdout.strip().splitlines()[-1] == "status=partial arms=paper:0/6"


def _recorded(run_dir: Path) -> int:
    path = run_dir / "replay.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


@pytest.mark.skipif(not HAVE_GEPA, reason="gepa is not installed")
def test_ctrl_c_during_an_optimization_packs_its_state_and_the_rerun_repeats_no_call(tmp_path):
    env = _env(tmp_path, TFGRPO_SCRIPTED_DELAY="0.3")
    env.pop("PYTHONUNBUFFERED", None)  # as a plain shell runs it: stdout into a pipe or file is block-buffered
    proc = subprocess.Popen(_cmd(tmp_path, "--arms", "gepa"), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    deadline, run_dir = time.monotonic() + 120, None
    # GEPA's own progress lines arrive while the run goes on (a block-buffered pipe would hold them back);
    # interrupt it in iteration 1, once its first minibatch is answered
    while time.monotonic() < deadline and (run_dir is None or _recorded(run_dir) < 3):
        if any("Iteration 1: Selected program" in ln for ln in seen):
            run_dir = next((tmp_path / "scratch").glob("*/gepa-run"))
        time.sleep(0.02)
    assert any("Base program full valset score" in ln for ln in seen), "".join(seen)[-3000:]
    assert run_dir is not None and _recorded(run_dir) >= 3, "".join(seen)[-3000:]
    assert proc.poll() is None, "the optimization ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    reader.join(timeout=30)
    out = "".join(seen)
    assert proc.returncode == 130, out[-3000:]
    assert "interrupted; rerun the same command to go on" in out and "Traceback" not in out
    assert (tmp_path / "out" / "gsm8k" / "train-state.tar.gz").is_file()  # the next session resumes it
    # its time so far still counts: the seed's valset and a minibatch, 0.3 s each at least
    assert float((run_dir.parent / "gepa-wall_s.txt").read_text()) >= 0.5
    assert lines(tmp_path / "out" / "gsm8k" / "sessions.jsonl")[-1]["status"] == "partial"
    recorded = _recorded(run_dir)

    # the rerun neither evaluates the seed prompt again nor asks the interrupted iteration's answers again
    out = ok(bench(tmp_path, "--arms", "gepa"))
    assert "GEPA resumes at iteration 1: the seed's valset scores come from the saved state" in out
    assert f"GEPA replayed {recorded} recorded answers" in out
    meta = json.loads((tmp_path / "out" / "gsm8k" / "gepa.train.json").read_text())
    assert meta["by_stage"]["gepa_rollout"] == meta["metric_calls"], meta  # each metric call asked once


def test_an_arm_still_being_evaluated_does_not_cut_the_compare_of_the_complete_arms(tmp_path):
    ok(bench(tmp_path, "--arms", "none,paper"))
    folder = tmp_path / "out" / "gsm8k"
    # retrieval has 2 of its 6 items so far (the run goes on in a later session)
    ok(bench(tmp_path, "--arms", "retrieval"))
    recs = (folder / "retrieval.jsonl").read_text().splitlines()
    (folder / "retrieval.jsonl").write_text("\n".join(recs[:2]) + "\n")
    (tmp_path / "results.md").write_text(RESULTS_MD)
    (tmp_path / "README.md").write_text("# T\n<!-- learning-results:start -->\n<!-- learning-results:end -->\n")
    ok(subprocess.run([sys.executable, "bench/learning.py", "--report", "--out", str(tmp_path / "out"),
                       "--results", str(tmp_path / "results.md"), "--readme", str(tmp_path / "README.md")],
                      cwd=ROOT, capture_output=True, text=True, timeout=120, env=_env(tmp_path)))
    compare = json.loads((folder / "compare.json").read_text())
    assert [r["row"] for r in compare["rows"]] == ["none", "paper"]
    assert "6 items" in (folder / "compare.md").read_text().splitlines()[0]
    assert "| retrieval | 2/6 partial |" in (tmp_path / "results.md").read_text()
