"""PgSession: this process's connection to one Postgres database, with `FileSession`'s interface (see `pg`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tfgrpo_common.errors import StoreError

from .location import redact
from .pg import PgConnection
from .pg_driver import _first_line, driver
from .unit_session import UnitSession

class PgSession(UnitSession):
    """This process's connection to one Postgres database, shared by every store on it (see `shared`).

    The interface of `FileSession`: `with session as con:` is one unit of work (re-entrant), `active`,
    `con`, `waits` (seconds waited for the write lock), `writers`, `retired`, `close()`, and `writing()`
    (a unit that holds the write lock) and `write_error(exc)` (a failed write as one `StoreError`).
    """

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url, self.path = url, redact(url)
        self.errors: tuple[type[BaseException], ...] = (driver().Error,)
        self.con: PgConnection | None = None

    def _begin(self) -> None:
        self._ready()

    def _end(self) -> None:
        if self.con is not None:
            self.con.end_unit()

    def _ready(self) -> None:
        if self.retired:
            raise StoreError(f"the store {self.path} is closed; open a new ExperienceStore")
        if self.con is None:
            self.con = PgConnection(self.url, self.waits)
        elif self.con.lost:
            self.con.reconnect()
        self.con.set_read_only(self.writers == 0)

    @property
    def active(self) -> bool:
        return self.con is not None and self.depth > 0

    @contextmanager
    def writing(self) -> Iterator[PgConnection]:
        """A unit of work holding the store's write lock throughout (an op batch: validate, plan, write)."""
        with self as con:
            con.lock_writes()
            try:
                yield con
            finally:
                con.unlock_writes()

    def write_error(self, exc: BaseException) -> StoreError | None:
        """A driver error that failed a write transaction, as the `StoreError` to raise instead."""
        if not isinstance(exc, self.errors):
            return None
        return StoreError(f"the store {self.path} could not complete a write ({type(exc).__name__}: "
                          f"{_first_line(exc, self.url)}); it was rolled back, nothing of it was written")

    def close(self) -> None:
        with self._lock:
            self.retired = True
            if self.con is not None:
                self.con.close()
                self.con = None
