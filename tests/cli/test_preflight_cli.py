"""A command that cannot reach its model, or is given bad input, stops at once with one clear line and
leaves nothing behind (no store file, no library, no run row). Real processes where the console output
matters; the unreachable provider is real (a closed port, or no network and no key)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from experience_store import ExperienceStore
from tests.faultserver import FaultServer
from tfgrpo.cli import app

DATA = os.environ.get("TFGRPO_DATA")
TASK = "gsm8k" if DATA and (Path(DATA) / "gsm8k").is_dir() else "arith"
BANNERS = ("Give Feedback", "Get Help", "Provider List", "LiteLLM.Info", "Traceback", "litellm.turn_on_debug")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tfgrpo(args: list[str], home: Path, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    """`tfgrpo ARGS` in a fresh process, with no provider keys in its environment."""
    base = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL"))}
    base.update({"TFGRPO_HOME": str(home), "COLUMNS": "300", **env})
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", "from tfgrpo.cli import main; main()", *args], env=base,
                          capture_output=True, text=True, timeout=120)
    return proc, time.monotonic() - start


def one_line(proc: subprocess.CompletedProcess) -> str:
    text = ANSI.sub("", proc.stdout + proc.stderr)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert not any(b in text for b in BANNERS), text
    return lines[0]


TRAIN = ["train", "--task", TASK, "--library", "y", "--limit", "2", "--batch-size", "1", "--group-size", "2"]


def test_train_without_a_provider_key_stops_at_once(tmp_path):
    proc, wall = tfgrpo(TRAIN + ["--model", "openai/gpt-4o-mini"], tmp_path / "home")
    line = one_line(proc)
    assert proc.returncode == 2 and "OPENAI_API_KEY" in line and "export" in line, line
    assert wall < 60, wall  # seconds (mostly imports), not a minute of failed calls
    assert not (tmp_path / "home").exists()  # no store file, no library


def test_train_with_an_unreachable_provider_stops_at_once(tmp_path):
    """A key, but the provider cannot be reached (litellm pointed at a closed port)."""
    proc, wall = tfgrpo(TRAIN + ["--model", "openai/gpt-4o-mini"], tmp_path / "home", OPENAI_API_KEY="sk-test",
                        OPENAI_BASE_URL=f"http://127.0.0.1:{closed_port()}/v1")
    line = one_line(proc)
    assert proc.returncode == 2 and "did not answer" in line and "connect" in line, line
    assert wall < 60 and not (tmp_path / "home").exists()


def test_train_and_eval_with_a_closed_api_base_fail_preflight_fast(tmp_path):
    base = f"http://127.0.0.1:{closed_port()}/v1"
    db = tmp_path / "s.duckdb"
    for args in (TRAIN + ["--db", str(db)], ["eval", "--task", TASK, "--limit", "1", "--db", str(db)]):
        proc, wall = tfgrpo(args + ["--model", "openai/qwen", "--api-base", base], tmp_path / "home")
        line = one_line(proc)
        assert proc.returncode == 2 and base in line and "cannot connect" in line, line
        assert wall < 60, wall
    assert not db.exists() and not (tmp_path / "home").exists()


def test_a_refused_train_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TFGRPO_HOME", str(tmp_path / "home"))
    fresh = tmp_path / "fresh.duckdb"
    r = CliRunner().invoke(app, ["train", "--task", "nope", "--library", "x", "--db", str(fresh)])
    assert r.exit_code == 2 and "unknown task 'nope'" in r.output, r.output
    r = CliRunner().invoke(app, ["train", "--task", "arith", "--model", "scripted", "--library", "no way!",
                                 "--db", str(fresh)])
    assert r.exit_code == 2 and "invalid library name" in r.output, r.output
    assert not fresh.exists()

    existing = tmp_path / "existing.duckdb"
    with ExperienceStore(existing) as store:
        store.ensure_library("kept")
    bad = [["--task", "nope"], ["--task", "jsonl"], ["--task", "arith", "--model", "local:nope"],
           ["--task", "arith", "--model", "scripted", "--learner-model", "local:nope"],
           ["--task", "arith", "--model", "openai/gpt-4o-mini"],
           ["--task", "arith", "--model", "scripted", "--agent", "react", "--sandbox", "nope"]]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for args in bad:
        r = CliRunner().invoke(app, ["train", *args, "--library", "x", "--db", str(existing)])
        assert r.exit_code == 2 and "error:" in r.output and "Traceback" not in r.output, (args, r.output)
    with ExperienceStore(existing, read_only=True) as store:
        assert store.libraries() == ["kept"]
        assert store.list_runs() == []
    r = CliRunner().invoke(app, ["train", "--task", "arith", "--library", "x", "--db", str(existing), "--resume"])
    assert r.exit_code == 2 and "no unfinished training run" in r.output, r.output
    r = CliRunner().invoke(app, ["train", "--task", "arith", "--library", "x", "--db", str(fresh), "--resume"])
    assert r.exit_code == 2 and "nothing to resume" in r.output and not fresh.exists(), r.output


def test_agent_mode_without_bwrap_is_refused_before_anything_is_written(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    db = tmp_path / "s.duckdb"
    proc, _ = tfgrpo(["train", "--task", "arith", "--agent", "react", "--model", "scripted", "--library", "x",
                      "--db", str(db)], tmp_path / "home", PATH=str(empty))
    line = one_line(proc)
    assert proc.returncode == 2 and "apt-get install bubblewrap" in line and "--sandbox process" in line, line
    assert not db.exists()


def test_sandbox_process_is_an_explicit_opt_in_that_reaches_the_tool(tmp_path):
    """No bwrap on PATH, `--sandbox process`: train and eval in agent mode run, and the run records it."""
    empty = tmp_path / "bin"
    empty.mkdir()
    db = tmp_path / "s.duckdb"
    agent = ["--task", "arith", "--agent", "react", "--sandbox", "process", "--model", "scripted", "--limit", "1"]
    proc, _ = tfgrpo(["train", *agent, "--library", "x", "--epochs", "1", "--batch-size", "1", "--group-size", "2",
                      "--db", str(db)], tmp_path / "home", PATH=str(empty))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc, _ = tfgrpo(["eval", *agent], tmp_path / "home", PATH=str(empty))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with ExperienceStore(db, read_only=True) as store:
        [run] = store.list_runs()
        assert store.get_run(run["id"])["config"]["train"]["task_options"]["sandbox"] == "process"


def test_preflight_passes_a_working_endpoint_and_names_auth_and_missing_models(tmp_path, monkeypatch):
    from tfgrpo.errors import ModelNotAvailableError
    from tfgrpo.llm.config import ModelConfig
    from tfgrpo.llm.factory import ModelPool
    from tfgrpo.llm.preflight import preflight

    monkeypatch.setenv("TFGRPO_HOME", str(tmp_path / "home"))
    with FaultServer(plausible=True) as srv, ModelPool() as pool:
        cfg = ModelConfig(model="openai/fake", api_base=srv.api_base)
        seconds = preflight(cfg, pool=pool)
        assert seconds is not None and seconds < 10
        assert preflight(ModelConfig(model="scripted"), pool=pool) is None
        for status, words in ((401, "authentication failed"), (404, "not found")):
            srv.script(("status", status))
            with pytest.raises(ModelNotAvailableError, match=words):
                preflight(cfg, pool=pool, role="learner model")
        db = tmp_path / "ok.duckdb"
        r = CliRunner().invoke(app, ["train", "--task", "arith", "--model", "openai/fake", "--api-base", srv.api_base,
                                     "--library", "ok", "--limit", "1", "--epochs", "1", "--batch-size", "1",
                                     "--group-size", "2", "--db", str(db)])
        assert r.exit_code == 0, r.output
    with ExperienceStore(db, read_only=True) as store:
        [run] = store.list_runs()
        assert store.get_run(run["id"])["config"]["train"]["task_options"]["sandbox"] == "bwrap"
