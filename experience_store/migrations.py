"""Schema migrations: append-only, named, each recorded in the `_migrations` table.

Rules: never edit or reorder a migration that has shipped; add a new one at the end of `MIGRATIONS`.
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

Migration = tuple[str, Callable[[duckdb.DuckDBPyConnection], None]]

_CORE = """
CREATE TABLE store_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE libraries (
    name VARCHAR PRIMARY KEY,
    created_at TIMESTAMP NOT NULL,
    current_version INTEGER NOT NULL DEFAULT 0,
    next_exp_id INTEGER NOT NULL DEFAULT 1,
    embed_model VARCHAR,
    embed_dim INTEGER
);
CREATE TABLE experiences (
    library VARCHAR NOT NULL,
    id INTEGER NOT NULL,
    text VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    created_version INTEGER NOT NULL,
    updated_version INTEGER NOT NULL,
    times_injected BIGINT NOT NULL DEFAULT 0,
    times_won BIGINT NOT NULL DEFAULT 0,
    support INTEGER NOT NULL DEFAULT 1,
    merged_into INTEGER,
    embedding FLOAT[],
    PRIMARY KEY (library, id)
);
CREATE TABLE exp_revisions (
    library VARCHAR NOT NULL,
    exp_id INTEGER NOT NULL,
    valid_from INTEGER NOT NULL,
    valid_to INTEGER,
    text VARCHAR NOT NULL,
    embedding FLOAT[]
);
CREATE TABLE versions (
    library VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    n_ops INTEGER NOT NULL,
    n_live INTEGER NOT NULL,
    run_id VARCHAR,
    step INTEGER,
    PRIMARY KEY (library, version)
);
CREATE TABLE ops (
    id BIGINT PRIMARY KEY,
    library VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    kind VARCHAR NOT NULL,
    exp_id INTEGER,
    merge_ids INTEGER[],
    before_text VARCHAR,
    after_text VARCHAR,
    reason VARCHAR,
    outcome VARCHAR NOT NULL,
    note VARCHAR,
    duplicate_of INTEGER,
    similarity DOUBLE,
    run_id VARCHAR,
    step INTEGER,
    group_id VARCHAR,
    rollout_ids VARCHAR[],
    call_id VARCHAR,
    created_at TIMESTAMP NOT NULL
);
"""

_RUNS = """
CREATE TABLE runs (
    id VARCHAR PRIMARY KEY,
    library VARCHAR,
    kind VARCHAR NOT NULL,
    model VARCHAR,
    config VARCHAR,
    status VARCHAR NOT NULL,
    steps INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    error VARCHAR,
    metrics VARCHAR
);
CREATE TABLE rollouts (
    id VARCHAR PRIMARY KEY,
    run_id VARCHAR NOT NULL,
    step INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    question_id VARCHAR NOT NULL,
    question VARCHAR NOT NULL,
    completion VARCHAR NOT NULL,
    reward DOUBLE NOT NULL,
    reward_reason VARCHAR,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    version INTEGER,
    finish_reason VARCHAR,
    error VARCHAR,
    extra VARCHAR,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE llm_calls (
    id VARCHAR PRIMARY KEY,
    ts DOUBLE NOT NULL,
    run_id VARCHAR,
    stage VARCHAR,
    model VARCHAR,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cost_usd DOUBLE,
    latency_s DOUBLE,
    request VARCHAR,
    response VARCHAR,
    finish_reason VARCHAR,
    error VARCHAR,
    attempts INTEGER,
    meta VARCHAR
);
CREATE TABLE learner_rejections (
    id BIGINT PRIMARY KEY,
    run_id VARCHAR,
    step INTEGER,
    stage VARCHAR,
    reason VARCHAR,
    raw VARCHAR,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE evals (
    id BIGINT PRIMARY KEY,
    run_id VARCHAR,
    library VARCHAR,
    version INTEGER,
    task VARCHAR,
    model VARCHAR,
    metrics VARCHAR,
    created_at TIMESTAMP NOT NULL
);
"""


_COUNTER_MARKS = """
CREATE TABLE counter_marks (
    library VARCHAR NOT NULL,
    mark VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (library, mark)
);
"""


_KINDS_GATE_PRIOR = """
ALTER TABLE experiences ADD COLUMN kind VARCHAR DEFAULT 'lesson';
ALTER TABLE experiences ADD COLUMN gate_delta DOUBLE DEFAULT 0;
ALTER TABLE versions ADD COLUMN prior VARCHAR;
CREATE TABLE gate_decisions (
    id BIGINT PRIMARY KEY,
    library VARCHAR NOT NULL,
    run_id VARCHAR,
    step INTEGER,
    base_version INTEGER NOT NULL,
    new_version INTEGER,
    n_items INTEGER NOT NULL,
    score_base DOUBLE NOT NULL,
    score_new DOUBLE NOT NULL,
    delta DOUBLE NOT NULL,
    threshold DOUBLE NOT NULL,
    accepted BOOLEAN NOT NULL,
    ops VARCHAR,
    created_at TIMESTAMP NOT NULL
);
"""


_GATE_EVIDENCE = """
ALTER TABLE gate_decisions ADD COLUMN alpha DOUBLE;
ALTER TABLE gate_decisions ADD COLUMN p_value DOUBLE;
ALTER TABLE gate_decisions ADD COLUMN gained INTEGER;
ALTER TABLE gate_decisions ADD COLUMN lost INTEGER;
ALTER TABLE gate_decisions ADD COLUMN item_scores VARCHAR;
"""


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
    ("0001_core_library_tables", _sql(_CORE)),
    ("0002_runs_rollouts_calls", _sql(_RUNS)),
    ("0003_counter_marks", _sql(_COUNTER_MARKS)),
    ("0004_kinds_gate_prior", _sql(_KINDS_GATE_PRIOR)),
    ("0005_gate_evidence", _sql(_GATE_EVIDENCE)),
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
