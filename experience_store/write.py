"""The write phase of an op batch. Called inside one transaction by `ExperienceStore.apply`."""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import numpy as np

from .apply import Step
from .base import insert_rows
from .models import OpKind

_OPS_COLS = ("id", "library", "version", "seq", "kind", "exp_id", "merge_ids", "before_text", "after_text",
             "reason", "outcome", "note", "duplicate_of", "similarity", "run_id", "step", "group_id", "rollout_ids",
             "call_id", "created_at")
_EXP_COLS = ("library", "id", "text", "status", "created_at", "updated_at", "created_version", "updated_version",
             "embedding", "kind", "gate_delta")
_REV_COLS = ("library", "exp_id", "valid_from", "valid_to", "text", "embedding")


def _vec(vector: np.ndarray | None) -> list[float] | None:
    return None if vector is None else np.asarray(vector, dtype=np.float32).tolist()


def _close_revision(con: duckdb.DuckDBPyConnection, library: str, exp_id: int, version: int) -> None:
    con.execute(
        "UPDATE exp_revisions SET valid_to = ? WHERE library = ? AND exp_id = ? AND valid_to IS NULL",
        [version, library, exp_id],
    )


def _open_revision(con, library: str, exp_id: int, version: int, text: str, vector) -> None:
    con.execute(
        "INSERT INTO exp_revisions VALUES (?, ?, ?, NULL, ?, ?)", [library, exp_id, version, text, _vec(vector)]
    )


def _set_text(con, library: str, exp_id: int, text: str, vector, version: int, now: datetime) -> None:
    con.execute(
        "UPDATE experiences SET text = ?, embedding = ?, updated_at = ?, updated_version = ?"
        " WHERE library = ? AND id = ?",
        [text, _vec(vector), now, version, library, exp_id],
    )
    _close_revision(con, library, exp_id, version)
    _open_revision(con, library, exp_id, version, text, vector)


def _retire(con, library: str, exp_id: int, version: int, now: datetime, merged_into: int | None) -> None:
    con.execute(
        "UPDATE experiences SET status = 'deleted', merged_into = ?, updated_at = ?, updated_version = ?"
        " WHERE library = ? AND id = ?",
        [merged_into, now, version, library, exp_id],
    )
    _close_revision(con, library, exp_id, version)


def _merge(con, library: str, step: Step, version: int, now: datetime) -> None:
    first, others = step.merge_ids[0], step.merge_ids[1:]
    sums = con.execute(
        "SELECT coalesce(sum(times_injected), 0), coalesce(sum(times_won), 0), coalesce(sum(support), 0)"
        " FROM experiences WHERE library = ? AND list_contains(?, id)",
        [library, others],
    ).fetchone()
    con.execute(
        "UPDATE experiences SET times_injected = times_injected + ?, times_won = times_won + ?,"
        " support = support + ? WHERE library = ? AND id = ?",
        [*sums, library, first],
    )
    _set_text(con, library, first, step.after or "", step.vector, version, now)
    for other in others:
        _retire(con, library, other, version, now, merged_into=first)


def write_step(con: duckdb.DuckDBPyConnection, library: str, step: Step, version: int, now: datetime) -> None:
    """One applied step other than a plain ADD (those go in batches, `_add_rows`)."""
    if step.support_only:
        con.execute(
            "UPDATE experiences SET support = support + 1 WHERE library = ? AND id = ?", [library, step.exp_id]
        )
    elif step.kind == OpKind.UPDATE:
        _set_text(con, library, step.exp_id, step.after or "", step.vector, version, now)
    elif step.kind == OpKind.DELETE:
        _retire(con, library, step.exp_id, version, now, merged_into=None)
    elif step.kind == OpKind.MERGE:
        _merge(con, library, step, version, now)


def _plain_add(step: Step) -> bool:
    return step.outcome == "applied" and not step.support_only and step.kind == OpKind.ADD


def _array(vector: np.ndarray | None) -> np.ndarray | None:
    return None if vector is None else np.asarray(vector, dtype=np.float32)


def _add_rows(con, library: str, steps: list[Step], version: int, now: datetime) -> None:
    """ADD steps in one statement per table (one statement per row cost about 1 ms a row); the embeddings
    go as arrays, which DuckDB's scan reads faster than lists of floats."""
    insert_rows(con, "experiences", _EXP_COLS,
                [[library, s.exp_id, s.after, "live", now, now, version, version, _array(s.vector), s.op.exp_kind, 0]
                 for s in steps], chunk=200)
    insert_rows(con, "exp_revisions", _REV_COLS,
                [[library, s.exp_id, version, None, s.after, _array(s.vector)] for s in steps], chunk=200)


def write_steps(con: duckdb.DuckDBPyConnection, library: str, steps: list[Step], version: int, now: datetime) -> None:
    """Apply a batch's planned steps in order; each run of consecutive ADDs is written as one batch (a later
    step may change what an ADD created, so the order between runs is kept)."""
    pending: list[Step] = []
    for step in steps:
        if _plain_add(step):
            pending.append(step)
            continue
        if step.outcome != "applied":  # rejected and no-op steps write nothing here (only their op rows)
            continue
        _add_rows(con, library, pending, version, now)
        pending = []
        write_step(con, library, step, version, now)
    _add_rows(con, library, pending, version, now)


def write_op_rows(con, library: str, steps: list[Step], version: int, first_id: int, now: datetime) -> list[list]:
    """One `ops` row per step (applied, rejected and no-op alike), with its provenance; returns the rows (in
    `_OPS_COLS` order)."""
    rows = []
    for n, step in enumerate(steps):
        prov = step.op.provenance
        rows.append([
            first_id + n, library, version, step.seq, step.kind.value, step.exp_id, step.merge_ids or None,
            step.before, step.after, step.op.reason, step.outcome, step.note, step.duplicate_of,
            None if step.similarity is None else float(step.similarity), prov.run_id, prov.step, prov.group_id,
            prov.rollout_ids, prov.call_id, now,
        ])
    insert_rows(con, "ops", _OPS_COLS, rows, chunk=200)
    return rows


def written_op(row: list) -> tuple:
    """A row `write_op_rows` wrote, as `reads.OP_SELECT` reads it back (every column but `seq`)."""
    return tuple(row[:3]) + tuple(row[4:])


def write_version(con, library: str, version: int, steps: list[Step], next_exp_id: int, now: datetime,
                  prior: dict | None = None) -> None:
    """Record the new version (with the prior settings it is meant to be used with, if given) and move the
    library's pointer to it."""
    # a text written and replaced within the same batch leaves an empty [v, v) revision: drop it
    con.execute("DELETE FROM exp_revisions WHERE library = ? AND valid_from = valid_to", [library])
    live = con.execute(
        "SELECT count(*) FROM experiences WHERE library = ? AND status = 'live'", [library]
    ).fetchone()[0]
    prov = steps[0].op.provenance if steps else None
    con.execute(
        "INSERT INTO versions (library, version, created_at, n_ops, n_live, run_id, step, prior)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [library, version, now, len(steps), live, prov.run_id if prov else None, prov.step if prov else None,
         json.dumps(prior, sort_keys=True) if prior else None],
    )
    con.execute(
        "UPDATE libraries SET current_version = ?, next_exp_id = ? WHERE name = ?", [version, next_exp_id, library]
    )
