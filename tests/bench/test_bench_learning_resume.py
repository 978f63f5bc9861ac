"""The learning bench stopped and resumed, as real subprocesses on the scripted model: a run killed mid-arm or
stopped by its time budget resumes to the same per-item results as an uninterrupted run without recomputing
finished items, also on another machine that has only the committed files; a training that cannot reach its
model stops cleanly with its state packed; Ctrl-C during a GEPA optimization packs its state and the rerun
repeats no model call."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.bench.learning_cli import HAVE_GEPA, ROOT, _cmd, _env, bench, lines, needs_gsm8k, ok, results

pytestmark = needs_gsm8k


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
    # each call takes 1 s, so the optimization still has about 2 s to go (a reflection, then a minibatch) when the
    # test interrupts it: under a loaded machine's scheduling (make test beside a benchmark) 0.3 s once was not
    # enough, and the run had finished its 8 metric calls before the signal was sent
    env = _env(tmp_path, TFGRPO_SCRIPTED_DELAY="1.0")
    env.pop("PYTHONUNBUFFERED", None)  # as a plain shell runs it: stdout into a pipe or file is block-buffered
    # Ctrl-C as a terminal delivers it: a test run started in the background (`make test &` from a script) ignores
    # SIGINT, the bench would inherit that and finish its optimization as if nobody had pressed anything
    proc = subprocess.Popen(_cmd(tmp_path, "--arms", "gepa"), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
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
    # its time so far still counts: the seed's valset and a minibatch, 1 s each at least
    assert float((run_dir.parent / "gepa-wall_s.txt").read_text()) >= 1.5
    assert lines(tmp_path / "out" / "gsm8k" / "sessions.jsonl")[-1]["status"] == "partial"
    recorded = _recorded(run_dir)

    # the rerun neither evaluates the seed prompt again nor asks the interrupted iteration's answers again
    out = ok(bench(tmp_path, "--arms", "gepa"))
    assert "GEPA resumes at iteration 1: the seed's valset scores come from the saved state" in out
    assert f"GEPA replayed {recorded} recorded answers" in out
    meta = json.loads((tmp_path / "out" / "gsm8k" / "gepa.train.json").read_text())
    assert meta["by_stage"]["gepa_rollout"] == meta["metric_calls"], meta  # each metric call asked once
