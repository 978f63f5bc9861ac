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


def test_overhead_steps_beyond_the_shipped_questions_get_generated_ones(tmp_path):
    from bench.overhead import arith_items

    shipped, none = arith_items(150, tmp_path)
    assert len(shipped) == 150 and none is None
    items, path = arith_items(450, tmp_path)
    assert len(items) == 450 and len({ex.question for ex in items}) == 450 and path and path.endswith(".jsonl")
    assert all(ex.answer for ex in items)
