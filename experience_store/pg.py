"""The store on PostgreSQL: `PgConnection`, one psycopg 3 connection that speaks the store's SQL (`pg_driver`
opens it; `pg_session.PgSession` is the session with `FileSession`'s interface over it).

The store's SQL is DuckDB's dialect; `PgConnection.execute` translates it (`dialect.to_postgres`, cached) and
returns a cursor with what the store uses (`fetchall`, `fetchone`, `description`, `fetchnumpy`). The
connection is in autocommit outside the store's transactions; `BEGIN`/`COMMIT`/`ROLLBACK` from `_tx` work.

Concurrency. Postgres lets every process keep its connection (no per-unit open as for a DuckDB file) and
readers never wait for writers. Writers are serialized by one advisory lock per database (the store's write
lock), as DuckDB's file lock serializes them: every transaction takes it (`pg_advisory_xact_lock`), and an
op batch holds it (`pg_advisory_lock`, `writing()`) from its validation and planning until its commit, so the
plan cannot go stale under another process's commit. Waiting for it is bounded by `TFGRPO_LOCK_WAIT_S`
(`lock_timeout`); past the bound one `StoreError` names the holder. The waits are kept in `waits`.

Text. PostgreSQL text cannot hold the NUL character (DuckDB's can): a NUL in a value written through the
store (say, in an LLM completion) is stored as U+FFFD, the replacement character, instead of failing the write.

Faults. A dropped connection is reopened at the next statement; a read outside a transaction (or the first
statement of a unit) that hit the drop is retried once on the new connection. A write whose connection
dropped is not retried: the server rolled the transaction back, and a `StoreError` says nothing of it was
written. An op batch whose write lock went with the connection before its transaction began is refused the
same way (its plan may be stale); one whose connection drops after its commit returns normally. Messages show
the URL without its password.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfgrpo_common.errors import StoreError

from .dialect import to_postgres
from .location import redact

log = logging.getLogger(__name__)

from .pg_driver import (
    _READ_HEADS, RECONNECT_S, WRITE_LOCK, _first_line, _no_nul,
    driver, open_connection,
)


class PgCursor:
    """The result of one statement, read the way the store reads DuckDB results."""

    def __init__(self, cur) -> None:
        self._cur = cur

    @property
    def description(self) -> list[tuple] | None:
        desc = self._cur.description if self._cur is not None else None
        return None if desc is None else [(c.name, c.type_code, None, None, None, None, None) for c in desc]

    def fetchall(self) -> list[tuple]:
        return self._cur.fetchall()

    def fetchone(self) -> tuple | None:
        return self._cur.fetchone()

    def fetchnumpy(self) -> dict[str, np.ndarray]:
        """Columns as numpy arrays (list columns as object arrays of vectors), like DuckDB's."""
        names = [d[0] for d in self.description or []]
        rows = self._cur.fetchall()
        out = {}
        for n, name in enumerate(names):
            values = [row[n] for row in rows]
            if any(isinstance(v, list | np.ndarray) for v in values):
                arr = np.empty(len(values), dtype=object)
                arr[:] = [np.asarray(v, dtype=np.float32) if isinstance(v, list) else v for v in values]
                out[name] = arr
            else:
                out[name] = np.asarray(values)
        return out


class PgConnection:
    """One psycopg connection speaking the store's (DuckDB) SQL; reopened when the server drops it."""

    dialect = "postgres"

    def __init__(self, url: str, waits: deque | None = None) -> None:
        self.url, self.display = url, redact(url)
        self.waits = waits if waits is not None else deque(maxlen=10_000)
        self.raw = open_connection(url, f"tfgrpo (pid {os.getpid()})")
        self.session_locks = 0  # the session-level write lock, held by `lock_writes` (a count: re-entrant)
        self.lock_lost = False  # the write lock went with a dropped connection during the unit holding it
        self.read_only = False

    # -- state -----------------------------------------------------------------------------------
    @property
    def lost(self) -> bool:
        """True once the server side of the connection is gone."""
        return bool(self.raw.closed or getattr(self.raw, "broken", False))

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return not self.lost and self.raw.info.transaction_status != TransactionStatus.IDLE

    def set_read_only(self, read_only: bool) -> None:
        """Make every statement read-only (no writable store in this process uses the database) or not."""
        if read_only != self.read_only:
            self._execute_raw("SELECT set_config('default_transaction_read_only', %s, false)",
                              ["on" if read_only else "off"], retry=not self.in_transaction)
            self.read_only = read_only

    def reconnect(self) -> None:
        """Open a new connection (the old one is gone), retrying for up to `RECONNECT_S`."""
        try:
            self.raw.close()
        except Exception as exc:  # noqa: BLE001 - it is already broken
            log.debug("closing the lost connection to %s: %s", self.display, exc)
        self.lock_lost = self.lock_lost or self.session_locks > 0  # the server released it with the old connection
        deadline, delay = time.monotonic() + RECONNECT_S, 0.25
        while True:
            try:
                self.raw = open_connection(self.url, f"tfgrpo (pid {os.getpid()})")
                break
            except StoreError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        log.info("reconnected to %s", self.display)
        if self.read_only:
            self.read_only = False
            self.set_read_only(True)

    def close(self) -> None:
        try:
            self.raw.close()
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            log.debug("closing the connection to %s: %s", self.display, exc)

    # -- statements ------------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> PgCursor:
        """Run one statement of the store's SQL; the cursor reads its result."""
        head = sql.lstrip()[:20].upper()
        if head.startswith("BEGIN"):
            self._begin()
            return PgCursor(None)
        if head.startswith("ROLLBACK"):
            self._rollback()
            return PgCursor(None)
        retry = head.startswith(_READ_HEADS) and not self.in_transaction  # a read outside a transaction
        return self._execute_raw(to_postgres(sql), [_no_nul(p) for p in params or []], retry=retry,
                                 committing=head.startswith("COMMIT"))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        query = to_postgres(sql)
        self._run(lambda cur: cur.executemany(query, [[_no_nul(p) for p in r] for r in rows]), retry=False)

    def copy_binary(self, table: str, columns: Sequence[str], chunks) -> None:
        """Stream a binary COPY (`pg_copy.encode`) into `table` (the bulk path; inside the caller's
        transaction)."""
        def copy(cur):
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as cp:
                for chunk in chunks:
                    cp.write(chunk)

        self._run(copy, retry=False)

    def _execute_raw(self, query: str, params: list, *, retry: bool, committing: bool = False) -> PgCursor:
        return self._run(lambda cur: cur.execute(query, params), retry=retry, committing=committing)

    def _run(self, fn, *, retry: bool, committing: bool = False) -> PgCursor:
        psycopg = driver()
        writing = committing or self.in_transaction or self.session_locks > 0
        for attempt in (0, 1):
            try:
                if self.lost:
                    raise psycopg.OperationalError("the connection was closed by the server")
                cur = self.raw.cursor(binary=True)
                fn(cur)
                return PgCursor(cur)
            except psycopg.OperationalError as exc:
                if not self.lost:
                    raise
                if retry and attempt == 0:
                    log.warning("lost the connection to %s (%s); reconnecting", self.display, _first_line(exc, self.url))
                    self.reconnect()
                    continue
                raise StoreError(self._lost_message(exc, committing, writing)) from None
        raise AssertionError("unreachable")

    def _lost_message(self, exc: BaseException, committing: bool, writing: bool) -> str:
        reason = _first_line(exc, self.url)
        if not writing:
            return (f"the connection to PostgreSQL at {self.display} was lost, also right after reconnecting "
                    f"({reason}); nothing was written. Check the server (is it restarting?) and retry")
        if committing:
            return (f"the connection to PostgreSQL at {self.display} was lost while committing ({reason}); the "
                    "write may or may not be stored: look (`tfgrpo experiences history`, `tfgrpo runs`) before "
                    "retrying it")
        return (f"the connection to PostgreSQL at {self.display} was lost during a write ({reason}); the server "
                "rolled it back, nothing of it was written. Retry once the server is reachable")

    # -- transactions and the write lock ---------------------------------------------------------
    def _begin(self) -> None:
        if self.lock_lost:  # what the unit planned under the write lock may be stale now: do not write it
            raise StoreError(f"the connection to PostgreSQL at {self.display} was lost during an op batch, before "
                             "it was written; nothing of it was written. Retry once the server is reachable")
        first = self.session_locks == 0 and not self.in_transaction  # nothing of the unit is on the server
        self._execute_raw("BEGIN", [], retry=first)
        try:
            self._take_write_lock(transaction=True)
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if not self.in_transaction:
            return  # none open, or the server rolled it back when the connection went
        try:
            self.raw.execute("ROLLBACK")
        except driver().OperationalError:
            if not self.lost:
                raise

    def lock_writes(self) -> None:
        """Hold the store's write lock until `unlock_writes` (re-entrant)."""
        if self.session_locks == 0:
            self._take_write_lock(transaction=False)
        self.session_locks += 1

    def unlock_writes(self) -> None:
        if self.session_locks == 0:
            return
        self.session_locks -= 1
        if self.session_locks:
            return  # still held by an outer unit
        if self.lock_lost or self.lost:
            self.lock_lost = False
            return  # gone with the connection
        try:
            self._execute_raw("SELECT pg_advisory_unlock(%s, %s)", list(WRITE_LOCK), retry=False)
        except StoreError:
            if not self.lost:
                raise
            # the connection went after the unit's work was done: the server released the lock with it, and
            # what the unit committed stands (the next unit reconnects)

    def _take_write_lock(self, *, transaction: bool) -> None:
        psycopg = driver()
        fn = "pg_advisory_xact_lock" if transaction else "pg_advisory_lock"
        retry = not transaction and not self.in_transaction
        start = time.monotonic()
        try:
            self._execute_raw(f"SELECT {fn}(%s, %s)", list(WRITE_LOCK), retry=retry)
        except psycopg.errors.LockNotAvailable:
            waited = time.monotonic() - start
            if self.in_transaction:
                self._rollback()
            raise StoreError(self._held_message(waited)) from None
        self.waits.append(time.monotonic() - start)

    def _held_message(self, waited: float) -> str:
        holder = "another process"
        try:
            row = self._execute_raw(
                "SELECT a.pid, a.application_name, a.client_addr::text FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 2 "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1",
                list(WRITE_LOCK), retry=False).fetchone()
            if row:
                pid, app, addr = row
                holder = f"Postgres backend {pid}" + (f" ({app}" if app else " (") + (f" from {addr})" if addr else ")")
        except Exception as exc:  # noqa: BLE001 - naming the holder is a courtesy
            log.debug("could not name the write lock's holder: %s", exc)
        return (f"the store {self.display} stayed locked for writing by {holder} for {waited:.1f} s. tfgrpo "
                "processes hold the write lock only for one unit of work (an op batch, a batch of log rows), so "
                "that process is stuck in a long write or is not tfgrpo. Wait and retry, raise TFGRPO_LOCK_WAIT_S, "
                "or stop that process")

    def end_unit(self) -> None:
        """At the end of a unit of work: nothing may stay open (a transaction, the write lock)."""
        if self.in_transaction:
            log.warning("a unit of work on %s ended inside a transaction; rolled back", self.display)
            self._rollback()
        if self.session_locks:
            self.session_locks = 1
            self.unlock_writes()
        self.lock_lost = False


