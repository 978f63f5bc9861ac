"""The small benches run end to end and print their machine-readable last line (figures not asserted:
timing belongs to the benches, not to tests)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gateway_cpu_prints_its_line_and_refuses_bad_sizes():
    out = subprocess.run([sys.executable, "bench/gateway_cpu.py", "--calls", "200", "--concurrency", "8"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"gateway_us_per_call=(-?[\d.]+) backend_us_per_call=([\d.]+) calls=200", last)
    assert m and float(m.group(2)) > 0, last
    bad = subprocess.run([sys.executable, "bench/gateway_cpu.py", "--calls", "5"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "--calls must be" in bad.stderr and "Traceback" not in bad.stderr


def test_store_bench_runs_on_a_real_store_and_checks_its_answers_against_numpy():
    """At a small size: the bench asserts the store's top-10 equals the brute-force top-10 itself."""
    out = subprocess.run([sys.executable, "bench/store_bench.py", "--n", "1500", "--queries", "10"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"topk_p50_ms=([\d.]+) numpy_p50_ms=([\d.]+) n=1500", last)
    assert m and float(m.group(1)) > 0, last
    assert "duckdb brute" in out.stdout and "ADD with dedup" in out.stdout


def test_overhead_steps_beyond_the_shipped_questions_get_generated_ones(tmp_path):
    from bench.overhead import arith_items

    shipped, none = arith_items(150, tmp_path)
    assert len(shipped) == 150 and none is None
    items, path = arith_items(450, tmp_path)
    assert len(items) == 450 and len({ex.question for ex in items}) == 450 and path and path.endswith(".jsonl")
    assert all(ex.answer for ex in items)


def test_gate_power_keeps_harmful_batches_rarely_with_the_sign_test():
    """The gate's own decision on simulated slices: the lax gate (alpha 1) keeps a -5-point batch about a fifth
    of the time on 32 items, the default (alpha 0.1) about one time in a hundred; a +10 batch passes more often
    than a null one."""
    import numpy as np

    from bench.gate_power import keep_rate

    rng = np.random.default_rng(1)
    lax, strict = (keep_rate(32, -0.05, 0.2, alpha, 600, rng) for alpha in (1.0, 0.1))
    assert 0.12 < lax < 0.3 and strict < 0.04
    null, good = (keep_rate(32, d, 0.2, 0.1, 600, rng) for d in (0.0, 0.10))
    assert null <= 0.1 and good > null + 0.15
    out = subprocess.run([sys.executable, "bench/gate_power.py", "--items", "16", "--trials", "50", "--cost-trials",
                          "50"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"keep_harmful_alpha1=[\d.]+ keep_harmful_alpha0.1=[\d.]+ power_alpha0.1=[\d.]+ items=16 "
                        r"harmful=-0.05 good=\+0.10 scored_share_null=[\d.]+ stop_changed=0", last)


def test_the_gate_stops_scoring_early_without_changing_a_decision():
    """Scoring the proposal item by item and stopping once it cannot pass gives the decision of scoring every
    item (checked on every trial), and a harmful batch is refused after part of the slice."""
    import numpy as np

    from bench.gate_power import scored_share

    rng = np.random.default_rng(2)
    harmful, changed = scored_share(32, -0.10, 0.2, 0.1, 300, rng, 0.5)
    good, changed_good = scored_share(32, 0.10, 0.2, 0.1, 300, rng, 0.5)
    assert changed == changed_good == 0
    assert harmful < 0.8 and good > harmful


def test_determinism_bench_runs_three_passes_on_the_real_embedded_model(smollm2_server):
    """Real SmolLM2 over HTTP: the three passes run and the last line counts what they compared."""
    out = subprocess.run([sys.executable, "bench/determinism.py", "--task", "arith", "--model", "local:smollm2",
                          "--n", "3", "--concurrency", "2", "--max-tokens", "24"], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    last = out.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"same_text_AB=(\d)/3 same_text_AC=(\d)/3 score_flips_AB=(\d) score_flips_AC=(\d) "
                     r"mean_A=[\d.]+ tok_s=([\d.]+)", last)
    assert m and float(m.group(5)) > 0 and int(m.group(3)) <= 3 - int(m.group(1)), last
    bad = subprocess.run([sys.executable, "bench/determinism.py", "--n", "1"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0 and "at least 2" in bad.stderr and "Traceback" not in bad.stderr


def test_rig_floor_sends_the_steps_calls_in_its_three_rounds(tmp_path):
    """The bare HTTP client against the real fake server: 3 groups of 2 rollouts, 2 learner calls, 1 consolidate call;
    each round waits for the one before, so the wall is at least three latencies."""
    from bench.fake_server import FakeServer
    from bench.rig_floor import floor_wall

    with FakeServer(0.2, workdir=tmp_path) as srv:
        wall = floor_wall(srv.api_base, ["1+1?", "2+2?", "3+3?"], group=2, learner_groups=2, concurrency=8)
        calls = srv.stats()["calls"]
    assert calls == 3 * 2 + 2 + 1
    assert wall >= 3 * 0.2


def test_run_all_rewrites_its_own_table_and_keeps_every_other_section(tmp_path):
    """`make bench` writes the top of bench/results.md; the learning section and the dated sections added by
    hand stay as they were (a run once replaced the whole file)."""
    results = tmp_path / "results.md"
    kept = ("## Learning effect — generated\n\nthe learning table\n\n"
            "## Training step overhead, full size — by hand\n\n```\noverhead_ratio=1.3\n```\n")
    results.write_text("# Benchmark results\n\n| bench | figures |\n| old | `stale=1` |\n\n## What each bench measures\n\n"
                       "- old\n\n## Output tails\n\n### old\n\n```\nstale=1\n```\n\n" + kept, encoding="utf-8")
    out = subprocess.run([sys.executable, "bench/run_all.py", "--quick", "--only", "gate_power", "--out", str(results)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text = results.read_text(encoding="utf-8")
    assert text.startswith("# Benchmark results") and "stale=1" not in text and "| gate_power |" in text
    assert text.count("## What each bench measures") == 1 and text.count("## Output tails") == 1
    assert text.endswith(kept), text[-400:]


def test_transport_bench_sends_its_burst_through_both_clients_and_refuses_bad_sizes():
    """Both clients send every request of the burst to the real fake server (the bench checks each answer)."""
    out = subprocess.run([sys.executable, "bench/transport.py", "--n", "30", "--latency", "0.05", "--rounds", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"transport_n=30 aiohttp_over_l_ms=(-?\d+) lean_over_l_ms=(-?\d+) over_l_ratio=(-?[\d.]+|inf) "
                     r"aiohttp_cpu_ms=(\d+) lean_cpu_ms=(\d+) cpu_ratio=([\d.]+|inf)", last)
    assert m, last
    assert "round 1 aiohttp" in out.stdout and "round 1 lean" in out.stdout
    bad = subprocess.run([sys.executable, "bench/transport.py", "--n", "0"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "--n and --rounds" in bad.stderr and "Traceback" not in bad.stderr
