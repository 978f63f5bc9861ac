"""The learning bench as the end-to-end tests run it: a real subprocess on the scripted model and a real DuckDB
file, small sizes (6 test items, 4 training and 4 gate questions), and the helpers that read its files."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tfgrpo.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("TFGRPO_DATA", ROOT.parent / "shared" / "data"))
SMALL = ["--bench", "gsm8k", "--model", "scripted", "--n", "6", "--n-ablation", "3", "--n-train", "4", "--n-gate", "4",
         "--group", "2", "--batch", "2"]
OURS_FIELDS = ("gate_items", "learn_lessons", "learn_examples")
HAVE_OURS = all(f in TrainConfig.model_fields for f in OURS_FIELDS)
HAVE_GEPA = importlib.util.find_spec("gepa") is not None

needs_gsm8k = pytest.mark.skipif(not (DATA / "gsm8k").is_dir(), reason=f"GSM8K not found under {DATA}")


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




def report(base: Path, results_md: Path, readme: Path) -> str:
    """`bench/learning.py --report` over `base`'s --out, writing the given results.md and README."""
    return ok(subprocess.run([sys.executable, "bench/learning.py", "--report", "--out", str(base / "out"),
                              "--results", str(results_md), "--readme", str(readme)], cwd=ROOT, capture_output=True,
                             text=True, timeout=120, env=_env(base)))
