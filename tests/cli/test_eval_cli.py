"""`tfgrpo eval` records its result in the store it was pointed at, the baseline included."""

from __future__ import annotations

from typer.testing import CliRunner

from experience_store import ExperienceStore
from tfgrpo.cli import app


def test_baseline_eval_recorded_only_with_db(tmp_path, monkeypatch):
    monkeypatch.setenv("TFGRPO_HOME", str(tmp_path / "home"))
    base = ["eval", "--task", "arith", "--model", "scripted", "--limit", "2", "--library", "none"]
    r = CliRunner().invoke(app, base)
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").rglob("*.duckdb"))

    db = tmp_path / "b.duckdb"
    r = CliRunner().invoke(app, base + ["--db", str(db)])
    assert r.exit_code == 0, r.output
    with ExperienceStore(db, read_only=True) as store:
        [row] = store.evals()
        assert row["library"] is None and row["task"] == "arith" and row["model"] == "scripted"
        assert row["metrics"]["n_items"] == 2
        assert store.calls(stage="eval") or store.calls()


def test_negative_seed_is_a_clear_usage_error(tmp_path):
    for cmd in (["eval", "--task", "arith", "--model", "scripted", "--limit", "1"],
                ["train", "--task", "arith", "--model", "scripted", "--dry-run"]):
        r = CliRunner().invoke(app, cmd + ["--seed", "-1", "--db", str(tmp_path / "s.duckdb")])
        assert r.exit_code == 2 and "--seed" in r.output and "Traceback" not in r.output, r.output
