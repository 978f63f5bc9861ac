"""`tfgrpo experiences copy`: a library with its whole history from a DuckDB file to PostgreSQL and back,
through the command line, against a real server; refusals are one line and leave the target unchanged."""

from __future__ import annotations

from typer.testing import CliRunner

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from tfgrpo.cli import app

runner = CliRunner()


def _history(db) -> list[tuple]:
    with ExperienceStore(db, read_only=True) as s:
        return [(h.version, h.kind.value, h.exp_id, h.before, h.after, h.outcome) for h in s.history("lib")]


def test_copy_duckdb_to_postgres_and_back_through_the_cli(tmp_path, pg_url):
    src, back = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    with ExperienceStore(src, embedder=HashEmbedder()) as s:
        s.apply("lib", [Op(kind=OpKind.ADD, text="Check the units."), Op(kind=OpKind.ADD, text="Show each step.")])
        s.apply("lib", [Op(kind=OpKind.UPDATE, target_id=1, text="Check the units before answering.")])
        s.apply("lib", [Op(kind=OpKind.DELETE, target_id=2)])
    res = runner.invoke(app, ["experiences", "copy", "--library", "lib", "--from", str(src), "--to", pg_url])
    assert res.exit_code == 0, res.output
    assert "copied library 'lib'" in res.output and "password" not in res.output
    res = runner.invoke(app, ["experiences", "copy", "--library", "lib", "--from", pg_url, "--to", str(back)])
    assert res.exit_code == 0, res.output
    assert _history(back) == _history(src) and len(_history(src)) == 4
    with ExperienceStore(back, read_only=True) as b, ExperienceStore(src, read_only=True) as a:
        assert b.current_version("lib") == a.current_version("lib") == 3
        assert [(e.id, e.text) for e in b.experiences("lib", 1)] == [(e.id, e.text) for e in a.experiences("lib", 1)]
    listed = runner.invoke(app, ["experiences", "list", "--library", "lib", "--db", pg_url, "--json"])
    assert listed.exit_code == 0 and "Check the units before answering." in listed.output


def test_copy_refusals_are_one_line_and_change_nothing(tmp_path):
    src, dst = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    for db in (src, dst):
        with ExperienceStore(db, embedder=HashEmbedder()) as s:
            s.apply("lib", [Op(kind=OpKind.ADD, text=f"A lesson kept in {db.name}.")])
    before = _history(dst)
    res = runner.invoke(app, ["experiences", "copy", "--library", "lib", "--from", str(src), "--to", str(dst)])
    assert res.exit_code == 2 and "already" in res.output and "Traceback" not in res.output
    assert _history(dst) == before
    res = runner.invoke(app, ["experiences", "copy", "--library", "lib", "--from", str(src), "--to", str(src)])
    assert res.exit_code == 2 and "same store" in res.output
    res = runner.invoke(app, ["experiences", "copy", "--library", "lib", "--from", str(src)])
    assert res.exit_code == 2 and "--to" in res.output
