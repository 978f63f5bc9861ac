"""Copy one library with its whole history from one store to another (DuckDB <-> Postgres, or any two stores).

What moves: the library's row (current version, next id, embedding model), every experience (deleted ones
too, with vectors and counters), every revision (time travel), every version, every op row (provenance
included), its counter marks, gate decisions and evaluations, and the runs that trained it with their
rollouts, logged LLM calls and rejected learner outputs. Experience ids, versions, op order and provenance
are kept as they are. Row ids numbered across a whole store (ops, gate decisions, evals, rejections) are kept
too unless the target already uses one of them; then that table's copied ids are shifted past the target's
largest, in order (`CopyResult.shifted`). A run the target already has (same id) is not copied again.

The source is read in one unit of work that no writer interleaves with; the target is written in ONE
transaction that also checks the library is not there yet: a failure anywhere leaves the target unchanged.
LLM calls logged without a run (the proxy's) belong to no library and stay behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfgrpo_common.errors import StoreError

from .base import insert_values
from .reads import check_library_name
from .store import ExperienceStore

#: (table, the column naming the library, order) of the rows that belong to a library
LIBRARY_TABLES = (
    ("libraries", "name", "name"),
    ("experiences", "library", "id"),
    ("exp_revisions", "library", "exp_id, valid_from"),
    ("versions", "library", "version"),
    ("ops", "library", "id"),
    ("counter_marks", "library", "mark"),
    ("gate_decisions", "library", "id"),
    ("evals", "library", "id"),
    ("runs", "library", "created_at, id"),
)
#: (table, order) of the rows that belong to a run of the library
RUN_TABLES = (("rollouts", "step, id"), ("llm_calls", "ts, id"), ("learner_rejections", "id"))
#: tables whose BIGINT ids are numbered across the whole store
GLOBAL_IDS = frozenset({"ops", "gate_decisions", "evals", "learner_rejections"})
_CHUNK_ROWS = 500


@dataclass
class Rows:
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class CopyResult:
    """What a copy wrote: rows per table, and the id shift applied to tables whose ids were taken."""

    library: str
    counts: dict[str, int] = field(default_factory=dict)
    shifted: dict[str, int] = field(default_factory=dict)
    runs_skipped: list[str] = field(default_factory=list)


def _plain(value: Any) -> Any:
    """A value as both drivers take it back (vectors read from Postgres come as numpy arrays)."""
    if isinstance(value, np.ndarray):
        return value.astype(np.float32).tolist()
    return value


def _select(con, table: str, where: str, params: list, order: str) -> Rows:
    cur = con.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY {order}", params)
    columns = [d[0] for d in cur.description]
    return Rows(columns, [[_plain(v) for v in row] for row in cur.fetchall()])


def read_library(src: ExperienceStore, library: str) -> dict[str, Rows]:
    """Every row of `library` in `src`, table by table, read with no writer in between."""
    src.require_library(library)
    with src._lock.writing() as con:  # a unit no other process writes during: one consistent picture
        data = {table: _select(con, table, f"{col} = ?", [library], order) for table, col, order in LIBRARY_TABLES}
        run_ids = [row[data["runs"].columns.index("id")] for row in data["runs"].rows]
        for table, order in RUN_TABLES:
            data[table] = _select(con, table, "list_contains(?, run_id)", [run_ids], order) if run_ids else \
                Rows(_select(con, table, "1 = 0", [], "1").columns, [])
    return data


def _rename(data: dict[str, Rows], new_name: str) -> None:
    for table, col, _ in LIBRARY_TABLES:
        rows = data[table]
        at = rows.columns.index(col)
        for row in rows.rows:
            row[at] = new_name


def _drop_known_runs(con, data: dict[str, Rows], result: CopyResult) -> None:
    runs = data["runs"]
    ids = [row[runs.columns.index("id")] for row in runs.rows]
    if not ids:
        return
    known = {r[0] for r in con.execute("SELECT id FROM runs WHERE list_contains(?, id)", [ids]).fetchall()}
    if not known:
        return
    result.runs_skipped = sorted(known)
    runs.rows = [row for row in runs.rows if row[runs.columns.index("id")] not in known]
    for table, _ in RUN_TABLES:
        rows = data[table]
        rows.rows = [row for row in rows.rows if row[rows.columns.index("run_id")] not in known]


def _shift_taken_ids(con, data: dict[str, Rows], result: CopyResult) -> None:
    for table in sorted(GLOBAL_IDS):
        rows = data[table]
        if not rows.rows:
            continue
        at = rows.columns.index("id")
        ids = [row[at] for row in rows.rows]
        taken = con.execute(f"SELECT count(*) FROM {table} WHERE list_contains(?, id)", [ids]).fetchone()[0]
        if not taken:
            continue
        top = con.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
        shift = int(top) - min(ids) + 1
        for row in rows.rows:
            row[at] += shift
        result.shifted[table] = shift


def _insert(con, table: str, rows: Rows) -> None:
    insert_values(con, f"INSERT INTO {table} ({', '.join(rows.columns)})", rows.rows, chunk=_CHUNK_ROWS)


def write_library(dst: ExperienceStore, data: dict[str, Rows], name: str) -> CopyResult:
    """Write a library read by `read_library` into `dst` as `name`, in one transaction."""
    dst._check_writable(f"copy library {name!r} into it")
    result = CopyResult(library=name)
    with dst._write_unit(), dst._tx() as con:
        if con.execute("SELECT 1 FROM libraries WHERE name = ?", [name]).fetchone():
            raise StoreError(
                f"the store {dst.path} already has a library {name!r}; nothing was copied. Copy it under another "
                "name (new_name / --as), or into another store"
            )
        _drop_known_runs(con, data, result)
        _shift_taken_ids(con, data, result)
        for table in [t for t, _, _ in LIBRARY_TABLES] + [t for t, _ in RUN_TABLES]:
            _insert(con, table, data[table])
            result.counts[table] = len(data[table].rows)
    dst._indexes.pop(name, None)
    return result


def copy_library(src: ExperienceStore, dst: ExperienceStore, library: str, *, new_name: str | None = None
                 ) -> CopyResult:
    """Copy `library` with its whole history from `src` into `dst` (as `new_name`, default the same name),
    in one target transaction; refused when `dst` already has a library of that name."""
    name = new_name or library
    check_library_name(name)
    dst._check_writable(f"copy library {name!r} into it")
    data = read_library(src, library)
    if name != library:
        _rename(data, name)
    return write_library(dst, data, name)
