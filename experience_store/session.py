"""A process's use of one store file: the DuckDB connection is open only while a unit of work runs.

DuckDB lets one process at a time open a file for writing, and no process open it at all while a writer
has it. So that a trainer, the proxy and the inspect commands can share one file, no process keeps it open
longer than one unit of work (a read, an op batch, a batch of call-log rows):

- `with session:` is one unit (re-entrant, so a read inside a transaction is part of it). The first entry
  takes the turn lock `<store>.lock` (an `flock` beside the file: shared for readers, exclusive for a
  writer; the kernel drops it if the process dies) and then opens the file: it attaches it to the
  process's in-memory DuckDB instance (`db.anchor`, made once: a new instance costs 15-20 ms here, an
  attachment about 1 ms), and closing detaches it (DuckDB writes its log into the file first). Waiting
  polls the turn lock every few milliseconds, so a freed file is taken within that time; `TFGRPO_LOCK_WAIT_S` bounds the wait
  (then one `StoreError` names the holder). A process that is not tfgrpo holding the file (DuckDB's own
  lock) is waited for the same way.
- A waiting process says so: it holds a shared `flock` on `<store>.want` while it waits. The holder looks
  at every unit boundary, and every `WATCH_S` while idle: when someone waits it closes the file at once and
  stays off it for `YIELD_S`, so the waiter gets its turn. When nobody waits, the connection stays open up
  to `LINGER_S` after the last unit, so units a few milliseconds apart (a training stage storing its
  groups as they finish) do not attach the file (about 1 ms, 5-15 ms to detach after writes) each time.
- A connection busy for `REOPEN_S` is closed at the next unit boundary and opened again: a process that
  writes without pause (the proxy's call log) would otherwise keep DuckDB's memory growing with the table.

The waits this process had are kept in `waits` (seconds, the last 10,000) for benchmarks.
"""

from __future__ import annotations

import fcntl
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from tfgrpo_common.errors import StoreError

from .db import anchor, attach, env_number, is_lock_error, lock_message
from .unit_session import UnitSession

#: The name the store file is attached under in the process's DuckDB instance (`db.anchor`).
ALIAS = "tfgrpo_store"
LINGER_S = 0.5
WATCH_S = 0.003
POLL_MAX_S = 0.004
YIELD_S = 0.02
REOPEN_S = 10.0
DEFAULT_WAIT_S = 60.0


def wait_bound() -> float:
    """Seconds to wait for a store file held by another process (`TFGRPO_LOCK_WAIT_S`, default 60)."""
    value = env_number("TFGRPO_LOCK_WAIT_S", float, 0, 86400, "a number of seconds", "seconds")
    return DEFAULT_WAIT_S if value is None else value


class FileSession(UnitSession):
    """The one connection of this process to `path`, shared by every store on the file, open per unit.

    `pg_session.PgSession` offers the same interface for a Postgres database.
    """

    errors: tuple[type[BaseException], ...] = (duckdb.Error,)  # driver errors a read turns into StoreError

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.memory = str(path) == ":memory:"
        self.con: duckdb.DuckDBPyConnection | None = None
        self.con_read_only = True
        self.opened_at = 0.0
        self.closed_at = 0.0
        self._timer: threading.Thread | None = None  # the linger watcher
        self._turn = None  # the open turn-lock file (None: in memory, or it cannot be created)
        self._want = None  # the open want file: held shared while this process waits for its turn
        self._turn_held = False
        self._idle_since = 0.0
        self._anchor: duckdb.DuckDBPyConnection | None = None  # the in-memory instance the file is attached to
        if self.memory:
            self.con = duckdb.connect(":memory:")
            self.con_read_only = False

    # -- the unit of work ----------------------------------------------------------------------
    def _begin(self) -> None:
        if not self.memory:
            self._open()

    def _end(self) -> None:
        if not self.memory:
            self._after_unit()

    @property
    def active(self) -> bool:
        """True inside a unit of work (on the thread that holds it) or for an in-memory database."""
        return self.con is not None and (self.memory or self.depth > 0)

    @contextmanager
    def writing(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A unit of work that writes after reading (an op batch). A writable connection to the file already
        excludes every other process, so it is an ordinary unit here."""
        with self as con:
            yield con

    def write_error(self, exc: BaseException) -> StoreError | None:
        """DuckDB errors in a write transaction propagate as they are (after the rollback)."""
        return None

    def _open(self) -> None:
        if self.retired:
            raise StoreError(f"the store {self.path} is closed; open a new ExperienceStore")
        want_ro = self.writers == 0
        if self.con is not None and self.con_read_only and not want_ro:
            self._close()  # a writable store joined while a read-only connection lingered
        if self.con is not None:
            return
        pause = self.closed_at + YIELD_S - time.monotonic() if self._yielding else 0.0
        if pause > 0:
            time.sleep(pause)
        self._yielding = False
        start = time.monotonic()
        self._take_turn(want_ro, start)
        try:
            self.con = self._connect_waiting(want_ro, start)
        except BaseException:
            self._end_turn()
            raise
        self.waits.append(time.monotonic() - start)
        self.con_read_only = want_ro
        self.opened_at = time.monotonic()

    _yielding = False

    def _turn_file(self):
        if self._turn is None:
            try:
                self._turn = open(self.path.with_name(self.path.name + ".lock"), "a+")  # noqa: SIM115
                self._want = open(self.path.with_name(self.path.name + ".want"), "a+")  # noqa: SIM115
            except OSError:
                return None  # a read-only folder: DuckDB's own lock is waited for instead
        return self._turn

    def someone_waits(self) -> bool:
        """True when another process is waiting for its turn on the file (it holds `.want` shared)."""
        if self._want is None:
            return False
        try:
            fcntl.flock(self._want.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self._want.fileno(), fcntl.LOCK_UN)
        return False

    def _take_turn(self, read_only: bool, start: float) -> None:
        fh = self._turn_file()
        if fh is None:
            return
        bound = wait_bound()
        mode = (fcntl.LOCK_SH if read_only else fcntl.LOCK_EX) | fcntl.LOCK_NB
        delay, wanting = 0.0005, False
        try:
            while True:
                try:
                    fcntl.flock(fh.fileno(), mode)
                    self._turn_held = True
                    return
                except BlockingIOError:
                    if not wanting:  # tell the holder someone waits (it lets go at its next unit boundary)
                        fcntl.flock(self._want.fileno(), fcntl.LOCK_SH)
                        wanting = True
                    waited = time.monotonic() - start
                    if waited >= bound:
                        raise StoreError(lock_message(self.path, "", read_only, waited=waited)) from None
                    time.sleep(delay)
                    delay = min(delay * 1.5, POLL_MAX_S)
        finally:
            if wanting:
                fcntl.flock(self._want.fileno(), fcntl.LOCK_UN)

    def _end_turn(self) -> None:
        if self._turn_held and self._turn is not None:
            fcntl.flock(self._turn.fileno(), fcntl.LOCK_UN)
        self._turn_held = False

    def _connect_waiting(self, read_only: bool, start: float) -> duckdb.DuckDBPyConnection:
        bound = wait_bound()
        delay = 0.002
        if self._anchor is None:
            self._anchor = anchor(self.path)
        while True:
            try:
                attach(self._anchor, self.path, read_only, ALIAS, raw_lock_errors=True)
            except duckdb.IOException as exc:
                if not is_lock_error(str(exc)):
                    raise
                waited = time.monotonic() - start
                if waited >= bound:
                    raise StoreError(lock_message(self.path, str(exc), read_only, waited=waited)) from None
                time.sleep(min(delay, max(bound - waited, 0.0)) * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 0.04)
                continue
            return self._anchor

    def _after_unit(self) -> None:
        if self.con is None:
            return
        if self.someone_waits():
            self._close()
            self._yielding = True  # give the waiting process its turn before opening again
            return
        if time.monotonic() - self.opened_at >= REOPEN_S:  # DuckDB's memory grows while a connection stays open
            self._close()
            return
        self._idle_since = time.monotonic()
        if self._timer is None:
            self._timer = threading.Thread(target=self._watch, name="tfgrpo-store-linger", daemon=True)
            self._timer.start()

    def _watch(self) -> None:
        """While the connection lingers: close it when someone waits or after `LINGER_S` idle."""
        while True:
            time.sleep(WATCH_S)
            with self._lock:
                if self.con is None:
                    self._timer = None
                    return
                if self.depth > 0:
                    continue
                waits = self.someone_waits()
                if waits or time.monotonic() - self._idle_since >= LINGER_S:
                    self._close()
                    self._yielding = waits
                    self._timer = None
                    return

    def _close(self) -> None:
        """Detach the file (DuckDB checkpoints its write-ahead log into it first); the anchor stays for the next
        unit."""
        if self.con is not None:
            try:
                if self.memory:  # an in-memory store is its own instance
                    self.con.close()
                else:
                    self.con.execute("USE memory")
                    self.con.execute(f"DETACH {ALIAS}")
            except duckdb.Error:  # an instance DuckDB invalidated (a fatal error): closing it lets go of the file
                self._drop_anchor()
            finally:
                self.con = None
                self.closed_at = time.monotonic()
                self._end_turn()

    def _drop_anchor(self) -> None:
        anchor_con, self._anchor = self._anchor, None
        if anchor_con is not None:
            try:
                anchor_con.close()
            except duckdb.Error:
                pass

    def close(self) -> None:
        """Close the connection now (the last store on the file closed)."""
        with self._lock:
            self.retired = True
            self._close()  # the linger watcher sees the closed connection and ends
            self._drop_anchor()
            for fh in (self._turn, self._want):
                if fh is not None:
                    fh.close()
            self._turn = self._want = None
