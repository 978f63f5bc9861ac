"""The learning bench end to end on the scripted model (control flow only; the real runs are recorded
in bench/results.md): every row, the compare files, the results section and the last line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_learning_bench_end_to_end_scripted(tmp_path):
    data = Path(os.environ.get("TFGRPO_DATA", ROOT.parent / "shared" / "data"))
    if not (data / "gsm8k").is_dir():
        pytest.skip(f"GSM8K not found under {data} (set TFGRPO_DATA)")
    results = tmp_path / "results.md"
    cmd = [sys.executable, "bench/learning.py", "--model", "scripted", "--train", "2", "--test", "3", "--group", "2",
           "--epochs", "1", "--batch", "2", "--db", str(tmp_path / "out" / "l.duckdb"), "--results", str(results)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TFGRPO_DATA": str(data), "TFGRPO_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"delta_mean=[+-]\d\.\d{4} ci=\[[+-]\d\.\d{4},[+-]\d\.\d{4}\] p=\d\.\d{4} gepa_delta=[+-]\d\.\d{4}",
                        last), last
    text = results.read_text()
    for row in ("baseline", "training-free (G=2)", "ablation G=1", "ablation direct", "GEPA (system prompt)"):
        assert f"| {row} |" in text
    assert "Experiences containing a test question's number verbatim: 0" in text
    [js] = (tmp_path / "out").glob("learning-*.json")
    payload = json.loads(js.read_text())
    assert payload["n_items"] == 3 and [r["row"] for r in payload["rows"]][0] == "baseline"
    assert all(len(r["per_item"]) == 3 for r in payload["rows"])
    assert payload["rows"][1]["cost"]["kind"] == "training-free" and payload["rows"][1]["cost"]["llm_calls"] > 0
