"""The store's one SQL source (DuckDB dialect) rewritten for Postgres, and store locations (paths, URLs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from experience_store.dialect import UnsupportedSQL, to_postgres
from experience_store.location import is_postgres_url, parse, redact, side_path


@pytest.mark.parametrize(("duck", "pg"), [
    ("SELECT id FROM experiences WHERE library = ? AND list_contains(?, id)",
     "SELECT id FROM experiences WHERE library = %s AND (id = ANY(%s))"),
    ("SELECT 1 FROM ops WHERE (exp_id = ? OR list_contains(coalesce(merge_ids, []::INTEGER[]), ?))",
     "SELECT 1 FROM ops WHERE (exp_id = %s OR (%s = ANY(coalesce(merge_ids, ARRAY[]::INTEGER[]))))"),
    ("INSERT OR IGNORE INTO libraries (name, created_at) VALUES (?, ?)",
     "INSERT INTO libraries (name, created_at) VALUES (%s, %s) ON CONFLICT DO NOTHING"),
    ("INSERT OR IGNORE INTO llm_calls (id) VALUES (?), (?);", "INSERT INTO llm_calls (id) VALUES (%s), (%s) ON CONFLICT DO NOTHING"),
    # quoted text is kept as written: no placeholder, no rewrite inside; a literal % is doubled for psycopg
    ("SELECT 'list_contains(?, x)', \"odd?name\", 'it''s 5%' FROM t WHERE a = ?",
     "SELECT 'list_contains(?, x)', \"odd?name\", 'it''s 5%%' FROM t WHERE a = %s"),
    ("SELECT x[1] FROM t WHERE y % 2 = ?", "SELECT x[1] FROM t WHERE y %% 2 = %s"),
])
def test_translation(duck, pg):
    assert to_postgres(duck) == pg


def test_constructs_without_a_translation_are_refused():
    with pytest.raises(UnsupportedSQL, match="INSERT OR REPLACE"):
        to_postgres("INSERT OR REPLACE INTO t VALUES (?)")
    with pytest.raises(UnsupportedSQL, match="parameter in both"):
        to_postgres("SELECT list_contains(?, ?)")


def test_locations_and_redaction():
    url = "postgresql://alice:pa:ss@db.example:5433/team?sslmode=require&password=other"
    assert redact(url) == "postgresql://alice@db.example:5433/team?sslmode=require"
    loc = parse(url)
    assert loc.postgres and loc.url == url and loc.display == "postgresql://alice@db.example:5433/team?sslmode=require"
    assert parse(Path("postgres://bob@h/db")).url == "postgres://bob@h/db"  # mangled by Path: restored
    assert parse("~/x.duckdb").path == Path("~/x.duckdb") and not parse(":memory:").postgres
    assert is_postgres_url("POSTGRESQL://h/db") and not is_postgres_url("/tmp/postgresql.duckdb")
    assert not is_postgres_url("mysql://h/db") and not is_postgres_url(None)


def test_side_files_sit_beside_a_file_or_under_the_home_folder_for_a_url(tmp_path, monkeypatch):
    monkeypatch.setenv("TFGRPO_HOME", str(tmp_path / "home"))
    assert side_path(tmp_path / "s.duckdb", ".memo.sqlite") == tmp_path / "s.duckdb.memo.sqlite"
    a = side_path("postgresql://alice:secret@db.example:5433/team", ".memo.sqlite")
    assert a.parent == tmp_path / "home" / "postgres" and a.name.startswith("db.example_5433_team-")
    assert "secret" not in str(a) and a.name.endswith(".memo.sqlite")
    assert side_path(Path("postgresql://alice:other@db.example:5433/team"), ".memo.sqlite") == a  # same store
    assert side_path("postgresql://alice@db.example:5433/other", ".memo.sqlite") != a
