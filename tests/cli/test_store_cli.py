"""`tfgrpo experiences|logs|runs` through typer's CliRunner on real DuckDB files."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind, Provenance, RolloutRow, default_db_path
from tfgrpo.cli.experiences import experiences_app, logs_cmd, runs_cmd
from tfgrpo_common.chat import CallRecord

app = typer.Typer()
app.add_typer(experiences_app, name="experiences")
app.command("logs")(logs_cmd)
app.command("runs")(runs_cmd)
runner = CliRunner()


@pytest.fixture()
def db(tmp_path, monkeypatch):
    monkeypatch.setenv("TFGRPO_EMBED_MODEL", "hash")
    monkeypatch.setenv("COLUMNS", "250")  # wide tables: rows are not wrapped
    path = tmp_path / "cli.duckdb"
    with ExperienceStore(path, embedder=HashEmbedder()) as s:
        prov = Provenance(run_id="run-a", step=2, group_id="q5", rollout_ids=["run-a:2:q5:1"], call_id="call-7")
        s.apply("math", [Op(kind=OpKind.ADD, text="Convert percentages to decimals", reason="won twice", provenance=prov),
                         Op(kind=OpKind.ADD, text="Re-read the question")])
        s.apply("math", [Op(kind=OpKind.UPDATE, target_id=2, text="Re-read the question before answering")])
        run = s.create_run("math", "train", {"g": 5}, "local")
        s.add_rollouts([RolloutRow(id=f"{run}:1:q:0", run_id=run, step=1, question_id="q", question="?", completion="!", reward=1.0)])
        s.record(CallRecord(stage="extract", model="local", prompt_tokens=30, completion_tokens=7, run_id=run))
        s.record(CallRecord(stage="rollout", model="local", prompt_tokens=10, completion_tokens=3, run_id=run))
    return path


def run_cli(*args: str):
    return runner.invoke(app, list(args))


def test_list_show_history(db):
    res = run_cli("experiences", "list", "--db", str(db), "-l", "math")
    assert res.exit_code == 0 and "Re-read the question before answering" in res.output and "version 2" in res.output
    past = run_cli("experiences", "list", "--db", str(db), "-l", "math", "--version", "1", "--json")
    assert [e["text"] for e in json.loads(past.output)] == ["Convert percentages to decimals", "Re-read the question"]
    show = run_cli("experiences", "show", "1", "--db", str(db), "-l", "math")
    assert show.exit_code == 0 and "run run-a" in show.output and "call call-7" in show.output
    hist = json.loads(run_cli("experiences", "history", "2", "--db", str(db), "-l", "math", "--json").output)
    assert [(h["kind"], h["before"], h["after"]) for h in hist] == [
        ("ADD", None, "Re-read the question"), ("UPDATE", "Re-read the question", "Re-read the question before answering")]
    full = json.loads(run_cli("experiences", "history", "--db", str(db), "-l", "math", "--json").output)
    assert full[0]["provenance"]["rollout_ids"] == ["run-a:2:q5:1"] and len(full) == 3


def test_diff_export_import_rm(db, tmp_path):
    diff = json.loads(run_cli("experiences", "diff", "1", "2", "--db", str(db), "-l", "math", "--json").output)
    assert diff["changed"][0]["after"]["text"] == "Re-read the question before answering"
    text_diff = run_cli("experiences", "diff", "1", "2", "--db", str(db), "-l", "math")
    assert "~ [2] Re-read the question" in text_diff.output
    out = tmp_path / "lib.md"
    assert run_cli("experiences", "export", "--db", str(db), "-l", "math", "--format", "md", "--out", str(out)).exit_code == 0
    assert "**[1]** Convert percentages to decimals" in out.read_text()
    jsonl = run_cli("experiences", "export", "--db", str(db), "-l", "math").output
    assert len(jsonl.splitlines()) == 2
    src = tmp_path / "new.jsonl"
    src.write_text('{"text": "Draw a diagram"}\n{"text": "Convert percentages to decimals"}\n')
    res = run_cli("experiences", "import", str(src), "--db", str(db), "-l", "math")
    assert res.exit_code == 0 and "imported 1" in res.output and "duplicate of 1" in res.output
    res = run_cli("experiences", "rm", "3", "--db", str(db), "-l", "math", "--reason", "not useful")
    assert res.exit_code == 0 and "version 4" in res.output
    with ExperienceStore(db, read_only=True) as s:
        assert s.history("math", 3)[-1].reason == "not useful"
    libs = json.loads(run_cli("experiences", "libraries", "--db", str(db), "--json").output)
    assert libs == [{"library": "math", "version": 4, "live": 2}]


def test_logs_and_runs(db):
    logs = json.loads(run_cli("logs", "--db", str(db), "--json").output)
    assert [c["stage"] for c in logs] == ["extract", "rollout"]
    only = json.loads(run_cli("logs", "--db", str(db), "--json", "--stage", "rollout", "--limit", "5").output)
    assert len(only) == 1 and only[0]["prompt_tokens"] == 10
    table = run_cli("logs", "--db", str(db))
    assert table.exit_code == 0 and "extract" in table.output
    runs = json.loads(run_cli("runs", "--db", str(db), "--json").output)
    assert len(runs) == 1
    assert {k: runs[0][k] for k in ("library", "status", "rollouts", "llm_calls", "tokens")} == {
        "library": "math", "status": "running", "rollouts": 1, "llm_calls": 2, "tokens": 50}
    assert run_cli("runs", "--db", str(db)).exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["experiences", "show", "42", "-l", "math"], "no experience 42 in library 'math'"),
        (["experiences", "list", "-l", "nope"], "no library 'nope'"),
        (["experiences", "list", "-l", "math", "--version", "9"], "no version 9"),
        (["experiences", "diff", "0", "5", "-l", "math"], "no version 5"),
        (["experiences", "rm", "77", "-l", "math"], "unknown experience id 77"),
        (["experiences", "export", "-l", "math", "--format", "xml"], "unknown format 'xml'"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(db, args, message):
    res = runner.invoke(app, [*args, "--db", str(db)])
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output
    assert res.output.strip().startswith("error:") and len(res.output.strip().splitlines()) == 1


def test_bad_import_and_missing_store(db, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": ""}\n')
    res = run_cli("experiences", "import", str(bad), "--db", str(db), "-l", "math")
    assert res.exit_code == 2 and "line 2: empty text" in res.output
    res = run_cli("experiences", "list", "--db", str(tmp_path / "none.duckdb"))
    assert res.exit_code == 2 and "no store at" in res.output
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"garbage" * 10)
    res = run_cli("runs", "--db", str(junk))
    assert res.exit_code == 2 and "not a DuckDB database file" in res.output
    assert junk.read_bytes() == b"garbage" * 10


def test_default_db_path_follows_tfgrpo_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TFGRPO_HOME", str(tmp_path / "home"))
    assert default_db_path() == tmp_path / "home" / "tfgrpo.duckdb"
    src = tmp_path / "one.jsonl"
    src.write_text('{"text": "Stored in the default place"}\n')
    assert run_cli("experiences", "import", str(src)).exit_code == 0
    res = run_cli("experiences", "list", "--json")
    assert [e["text"] for e in json.loads(res.output)] == ["Stored in the default place"]
    monkeypatch.delenv("TFGRPO_HOME")
    assert default_db_path().parts[-3:] == ("share", "tfgrpo", "tfgrpo.duckdb")
