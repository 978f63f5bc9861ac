"""`tfgrpo demo` end to end on the scripted model (the real one is the 1.5B, for `make demo`): it learns with
the gate, prints the stages as they happen, shows the library and the gate's decisions, and the paired
before/after when something was kept (none when the library stayed empty: both prompts would be the same)."""

from __future__ import annotations

from typer.testing import CliRunner

from experience_store import ExperienceStore
from tfgrpo.cli import demo


def _run(db):
    from tfgrpo.cli import app

    r = CliRunner().invoke(app, ["demo", "--model", "scripted", "--quick", "--db", str(db)])
    assert r.exit_code == 0, r.output
    for line in ("1/3 learning", "step 1 rollouts", "step 1 select", "step 2 rollouts", "step 2 apply",
                 "what was learned", "2/3 evaluating"):
        assert line in r.output, line
    return r.output


def test_demo_learns_without_the_gate_then_compares(tmp_path, monkeypatch):
    # without the gate every valid op is applied, so the library is not empty and the before/after runs
    config = demo.TrainConfig
    monkeypatch.setattr(demo, "TrainConfig", lambda **kw: config(**{**kw, "gate_items": 0}))
    db = tmp_path / "demo.duckdb"
    output = _run(db)
    assert "3/3 result" in output and "paired difference" in output
    with ExperienceStore(db, read_only=True) as store:
        [lib] = store.libraries()
        [run] = store.list_runs(lib)
        assert run["status"] == "completed" and run["rollouts"] == 8
        assert store.experiences(lib)
        assert len(store.evals()) == 2  # baseline and library, recorded with the run
        assert store.gate_decisions(lib) == []


def test_demo_shows_rejected_batches_and_skips_an_empty_before_after(tmp_path):
    # the scripted model gets no held-out question right with or without a lesson: the gate keeps nothing
    db = tmp_path / "demo.duckdb"
    output = _run(db)
    assert "the gate's decisions" in output and "rejected" in output and "ADD lesson" in output
    assert "skipped: nothing passed the gate" in output and "3/3 result" not in output
    with ExperienceStore(db, read_only=True) as store:
        [lib] = store.libraries()
        assert store.experiences(lib) == []
        assert [d["accepted"] for d in store.gate_decisions(lib)] == [False, False]
        assert store.evals() == []
