"""Connection handling shared by the store's parts: units of work, transactions, read-only guard."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
# DuckDB's register() of NumPy arrays (`insert_rows`) imports numpy.ma on its first use: 30 ms, which then fell
# inside a training step's first op-batch transaction, on the step's critical path; a process pays it here once
import numpy.ma  # noqa: F401

from tfgrpo_common.errors import StoreError

from . import location, shared
from .db import prepare_schema


def utcnow() -> datetime:
    """Current UTC time as a naive datetime (how timestamps are stored)."""
    return datetime.now(UTC).replace(tzinfo=None)


def insert_values(con, head: str, rows: list[list[Any]], *, chunk: int) -> None:
    """`head` (e.g. "INSERT INTO t (a, b)") with `rows` as parameterized multi-row VALUES, `chunk` rows a
    statement: one statement per chunk instead of executemany's one per row (about 0.6 ms a row on DuckDB)."""
    if not rows:
        return
    marks = "(" + ", ".join("?" * len(rows[0])) + ")"
    for i in range(0, len(rows), chunk):
        part = rows[i:i + chunk]
        con.execute(f"{head} VALUES {', '.join([marks] * len(part))}", [v for row in part for v in row])


def insert_rows(con, table: str, cols: Sequence[str], rows: list[list[Any]], *, verb: str = "INSERT",
                chunk: int = 500) -> None:
    """`rows` (one list of values per row, in `cols` order; a list column may hold NumPy arrays) into `table`,
    inside the caller's transaction. DuckDB scans them as per-column arrays in one statement (a batch of 200
    op rows: 16 ms, against 53 ms as a parameterized multi-row VALUES, whose binding dominates); other
    connections (Postgres) get multi-row VALUES, `chunk` rows a statement. `verb` is "INSERT" or
    "INSERT OR IGNORE"."""
    if not rows:
        return
    names = ", ".join(cols)
    if isinstance(con, duckdb.DuckDBPyConnection):
        # fromiter keeps one object per row: np.array would turn equal-length lists into a second dimension
        arrays = {c: np.fromiter((r[i] for r in rows), dtype=object, count=len(rows)) for i, c in enumerate(cols)}
        complete = getattr(con, "complete", None)  # DuckDB 2 refuses register() while a result is unread
        if complete is not None:
            complete()
        con.register("_rows_in", arrays)
        # on an error the transaction is aborted (an unregister would fail there and hide the error); its
        # rollback drops the registration with the rest
        con.execute(f"{verb} INTO {table} ({names}) SELECT {names} FROM _rows_in")
        con.unregister("_rows_in")
        return
    lists = [[v.tolist() if isinstance(v, np.ndarray) else v for v in r] for r in rows]  # embeddings as arrays
    insert_values(con, f"{verb} INTO {table} ({names})", lists, chunk=chunk)


class StoreBase:
    """A store's handle on its file. Every use of the connection is one unit of work (`with self._lock:`,
    re-entrant): the file is open only during units (see `session`), so other processes can use it between.

    Stores on the same file in one process share the session and the indexes (see `shared`).
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        where = location.parse(path)
        self.backend = "postgres" if where.postgres else "duckdb"
        #: the file, or for Postgres the URL without its password (what messages show)
        self.path: Path | str = where.display if where.postgres else where.path  # type: ignore[assignment]
        self._url = where.url
        self.read_only = read_only
        self._in_tx = False
        self._open = True
        if where.postgres:
            from .pg_session import PgSession

            url = where.url
            self._key = f"postgres:{url}"
            state = shared.acquire(self._key, Path(), not read_only, lambda: PgSession(url))
        else:
            self._key = shared.key_for(self.path, self)
            state = shared.acquire(self._key, self.path, not read_only)
        self._lock = state.session
        self._indexes = state.indexes
        try:
            with self._lock as con:
                prepare_schema(con, self.path, read_only)
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the store (idempotent). Later calls raise `StoreError`."""
        if self._open:
            self._open = False
            shared.release(self._key, not self.read_only)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The connection of the current unit of work (`with self._lock:`); raises when closed."""
        if not self._open:
            raise StoreError(f"the store {self.path} is closed; open a new ExperienceStore")
        if not self._lock.active:
            raise StoreError(f"internal error: the store {self.path} was used outside a unit of work "
                             "(`with store._lock:`)")
        return self._lock.con  # type: ignore[return-value]

    def training_lease(self, library: str):
        """Context manager: hold `library`'s training lease (one trainer per library, see `lease`; on
        Postgres an advisory lock held by a connection of its own, see `pg_lease`)."""
        if self._url is not None:
            from .pg_lease import training_lease as pg_training_lease

            return pg_training_lease(self._url, library)
        from .lease import training_lease

        memory = str(self.path) == ":memory:"
        return training_lease(self.path, library, self if memory else None)

    # -- helpers ---------------------------------------------------------------------------------
    @contextmanager
    def _reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection for one read; a driver error (a value out of range, a damaged file) becomes one
        `StoreError` that names the store, not a DuckDB traceback. Reads change nothing, so nothing is lost."""
        with self._lock:
            try:
                yield self.con
            except self._lock.errors as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise StoreError(f"the store {self.path} could not answer a read ({type(exc).__name__}: {first}); "
                                 "check the values you passed (ids, versions, limits)") from None

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._reading() as con:
            return con.execute(sql, list(params)).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        with self._reading() as con:
            return con.execute(sql, list(params)).fetchone()

    def _dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._reading() as con:
            cur = con.execute(sql, list(params))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def _check_writable(self, what: str) -> None:
        if self.read_only:
            raise StoreError(
                f"cannot {what}: the store {self.path} was opened read-only; open it without read_only "
                "(and stop other processes using it) to write"
            )

    @contextmanager
    def _write_unit(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A unit of work that reads, then writes what it read decided (an op batch): no other process
        writes in between (a DuckDB file: the writable connection excludes them; Postgres: the unit holds
        the store's write lock)."""
        with self._lock.writing() as con:
            yield con

    @contextmanager
    def _tx(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction: commit on success, roll back on any exception (then re-raise; on Postgres a
        driver error is re-raised as one `StoreError` that says nothing was written)."""
        with self._lock:
            if self._in_tx:
                yield self.con
                return
            con = self.con
            con.execute("BEGIN TRANSACTION")  # on Postgres this also takes the store's write lock
            self._in_tx = True
            try:
                yield con
                con.execute("COMMIT")
            except BaseException as exc:
                con.execute("ROLLBACK")
                failure = self._lock.write_error(exc)
                if failure is not None:
                    raise failure from None
                raise
            finally:
                self._in_tx = False

    def _insert_new(self, table: str, cols: Sequence[str], rows: list[list[Any]], *,
                    before: Callable[[Any], None] | None = None) -> None:
        """`rows` into `table` in one transaction, rows whose key is already stored left as they are (`before(con)`
        runs first in the same transaction). On DuckDB a plain INSERT is tried first: INSERT OR IGNORE costs
        about 3 ms more a statement there (1 to 80 call-log rows: 4.7-5.4 ms against 1.7-2.8), and a stored key
        is rare (a batch retried after a commit it did not see acknowledged, a resumed step's rollouts); on a
        duplicate key the transaction is rolled back and done again with INSERT OR IGNORE."""
        def write(verb: str) -> None:
            with self._tx() as con:
                if before is not None:
                    before(con)
                insert_rows(con, table, cols, rows, verb=verb)

        with self._lock:
            if self.backend != "duckdb" or self._in_tx:  # there a failure would abort an enclosing transaction
                return write("INSERT OR IGNORE")
            try:
                write("INSERT")
            except duckdb.ConstraintException:
                write("INSERT OR IGNORE")

    def _next_id(self, table: str) -> int:
        row = self._one(f"SELECT coalesce(max(id), 0) + 1 FROM {table}")
        return int(row[0]) if row else 1
