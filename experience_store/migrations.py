"""Schema migrations: append-only, named, each recorded in the `_migrations` table.

Rules: never edit or reorder a migration that has shipped; add a new one at the end of `MIGRATIONS`, its DDL a
new constant in `schema_ddl`.
Each migration runs in its own transaction together with the row that records it, so a failure leaves
the file at the previous schema. A file that records a migration this code does not know was written
by a newer tfgrpo and is refused rather than guessed at.

Each migration has a DuckDB and a PostgreSQL variant under the same name, recorded in the same `_migrations`
table: the Postgres DDL is the DuckDB DDL with Postgres's names for two types (`_pg_types`, frozen like the
migrations: DuckDB's 4-byte FLOAT is Postgres's REAL, DOUBLE is DOUBLE PRECISION). A later migration whose
DDL differs further between the two passes both texts to `_sql`. On Postgres each migration's transaction
holds the store's write lock, so two processes opening a new database at once apply each migration once.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import duckdb

from tfgrpo_common.errors import StoreError

from .schema_ddl import CORE, COUNTER_MARKS, GATE_EVIDENCE, KINDS_GATE_PRIOR, RUNS

Migration = tuple[str, Callable[[duckdb.DuckDBPyConnection], None]]


def dialect_of(con) -> str:
    """"postgres" for the store's Postgres connection (`pg.PgConnection`), else "duckdb"."""
    return getattr(con, "dialect", "duckdb")


def _pg_types(script: str) -> str:
    """The Postgres variant of a shipped DuckDB DDL script. Frozen: migrations that shipped depend on it."""
    return re.sub(r"\bFLOAT\[\]", "REAL[]", re.sub(r"\bDOUBLE\b", "DOUBLE PRECISION", script))


def _sql(script: str, postgres: str | None = None) -> Callable[[duckdb.DuckDBPyConnection], None]:
    """A migration step running `script` (DuckDB) or `postgres` (default: `_pg_types(script)`)."""
    pg_script = _pg_types(script) if postgres is None else postgres

    def run(con: duckdb.DuckDBPyConnection) -> None:
        text = pg_script if dialect_of(con) == "postgres" else script
        for statement in text.split(";"):
            if statement.strip():
                con.execute(statement)

    return run


#: The schema history. Append only.
MIGRATIONS: list[Migration] = [
    ("0001_core_library_tables", _sql(CORE)),
    ("0002_runs_rollouts_calls", _sql(RUNS)),
    ("0003_counter_marks", _sql(COUNTER_MARKS)),
    ("0004_kinds_gate_prior", _sql(KINDS_GATE_PRIOR)),
    ("0005_gate_evidence", _sql(GATE_EVIDENCE)),
]

_LEDGER = "CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"


def _has_ledger(con: duckdb.DuckDBPyConnection) -> bool:
    sql = "SELECT count(*) FROM information_schema.tables WHERE table_name = '_migrations'"
    if dialect_of(con) == "postgres":  # only the schema the store uses, not another one's table
        sql += " AND table_schema = current_schema()"
    row = con.execute(sql).fetchone()
    return bool(row and row[0])


def applied_migrations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Names of the migrations already recorded in this file (empty for a new file)."""
    if not _has_ledger(con):
        return []
    return [r[0] for r in con.execute("SELECT name FROM _migrations ORDER BY name").fetchall()]


def check_not_newer(applied: list[str], where: str) -> None:
    """Refuse a file whose schema was written by a newer tfgrpo."""
    known = {name for name, _ in MIGRATIONS}
    unknown = sorted(set(applied) - known)
    if unknown:
        raise StoreError(
            f"{where} was written by a newer tfgrpo (unknown schema migrations: {', '.join(unknown)}); "
            "upgrade tfgrpo (pip install -U tfgrpo) or pass --db another file"
        )


def pending_migrations(con: duckdb.DuckDBPyConnection, where: str) -> list[str]:
    """Names of the known migrations not yet applied; refuses files from a newer schema."""
    applied = applied_migrations(con)
    check_not_newer(applied, where)
    done = set(applied)
    return [name for name, _ in MIGRATIONS if name not in done]


def migrate(con: duckdb.DuckDBPyConnection, where: str) -> list[str]:
    """Apply every pending migration, each in its own transaction; returns the names applied.

    Running it again on an up-to-date file is a no-op. A migration another process applied meanwhile
    (seen inside the transaction, which on Postgres holds the store's write lock) is skipped.
    """
    pending = pending_migrations(con, where)
    if not pending:
        return []
    steps = dict(MIGRATIONS)
    done = []
    for name in pending:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(_LEDGER)
            if name in applied_migrations(con):
                con.execute("COMMIT")
                continue
            steps[name](con)
            con.execute("INSERT INTO _migrations VALUES (?, now())", [name])
            con.execute("COMMIT")
            done.append(name)
        except Exception as exc:
            con.execute("ROLLBACK")
            raise StoreError(
                f"upgrading the schema of {where} failed at migration {name} ({exc}); the file was left at "
                "the previous schema. Please report this bug, and use --db another file meanwhile"
            ) from exc
    return done
