"""`tfgrpo demo` end to end on the scripted model (the real one is the 1.5B, for `make demo`): it learns with
the gate, prints the stages as they happen, shows the library and the paired before/after."""

from __future__ import annotations

from typer.testing import CliRunner

from experience_store import ExperienceStore


def test_demo_runs_learns_gates_and_compares(tmp_path):
    from tfgrpo.cli import app

    db = tmp_path / "demo.duckdb"
    r = CliRunner().invoke(app, ["demo", "--model", "scripted", "--quick", "--db", str(db)])
    assert r.exit_code == 0, r.output
    for line in ("1/3 learning", "step 1 rollouts", "step 1 select", "step 1 apply", "what was learned",
                 "2/3 evaluating", "3/3 result", "paired difference"):
        assert line in r.output, line
    with ExperienceStore(db, read_only=True) as store:
        [lib] = store.libraries()
        [run] = store.list_runs(lib)
        assert run["status"] in ("completed", "nothing_learned") and run["rollouts"] == 8
        assert len(store.evals()) == 2  # baseline and library, recorded with the run
