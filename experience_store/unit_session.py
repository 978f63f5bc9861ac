"""What the file and the Postgres sessions share: one connection per process and database, used in units of
work (`with session as con:`), re-entrant on the thread that holds it and one thread at a time."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


class UnitSession:
    """Subclasses say what the outermost unit does first (`_begin`: open, reconnect) and last (`_end`)."""

    memory = False
    con: Any = None

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.depth = 0  # units entered on the holding thread
        self.writers = 0  # writable stores open on this database in this process
        self.waits: deque[float] = deque(maxlen=10_000)  # seconds waited for the file or the write lock
        self.retired = False  # the last store closed: no more units

    def _begin(self) -> None:
        raise NotImplementedError

    def _end(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        self._lock.acquire()
        try:
            if self.depth == 0:
                self._begin()
        except BaseException:
            self._lock.release()
            raise
        self.depth += 1
        return self.con

    def __exit__(self, *exc: object) -> None:
        try:
            self.depth -= 1
            if self.depth == 0:
                self._end()
        finally:
            self._lock.release()
