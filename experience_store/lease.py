"""One trainer per library: a training run holds its library's lease for as long as it runs.

On a store file the lease is an exclusive `flock` on `<store>.train-<library>.lock` beside it, so the kernel
lets go of it when the holder exits for any reason (a SIGKILLed trainer never leaves a stale lease), and the
file says who holds it. Trainers on different libraries of one file hold different leases and both run.
An in-memory store keeps its leases in the process; a Postgres store uses an advisory lock (`pg_lease`).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tfgrpo_common.errors import StoreError

_MEMORY: set[tuple[int, str]] = set()
_MEMORY_GUARD = threading.Lock()


class Lease:
    """A held lease; `note(run_id)` records which run holds it, for the message a second trainer gets."""

    def __init__(self, path: Path | None, fh=None) -> None:
        self.path, self._fh = path, fh
        self.run_id: str | None = None

    def note(self, run_id: str) -> None:
        self.run_id = run_id
        if self._fh is not None:
            _write_holder(self._fh, run_id)


def lease_path(db: Path, library: str) -> Path:
    return db.with_name(f"{db.name}.train-{library}.lock")


def _write_holder(fh, run_id: str | None) -> None:
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps({"run_id": run_id, "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                                                       time.gmtime())}))
    fh.flush()


def _holder_text(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    run = f"run {info['run_id']}" if info.get("run_id") else "a run that is starting"
    who = f" (process {info['pid']}, since {info.get('since', '?')})" if info.get("pid") else ""
    return run + who


@contextmanager
def training_lease(db: Path, library: str, memory_owner: object | None = None) -> Iterator[Lease]:
    """Hold the training lease of `library` on the store at `db`, or raise `StoreError` naming the run that
    holds it. `memory_owner`: the in-memory store (its leases live in this process)."""
    if memory_owner is not None:
        key = (id(memory_owner), library)
        with _MEMORY_GUARD:
            if key in _MEMORY:
                raise StoreError(refusal(library, "another run in this process"))
            _MEMORY.add(key)
        try:
            yield Lease(None)
        finally:
            with _MEMORY_GUARD:
                _MEMORY.discard(key)
        return
    path = lease_path(db, library)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(refusal(library, _holder_text(path))) from None
        _write_holder(fh, None)
        yield Lease(path, fh)
    finally:
        fh.close()  # closing the file releases the flock


def refusal(library: str, holder: str) -> str:
    """The one line a second trainer of `library` gets (also used by `pg_lease`)."""
    return (f"library {library!r} is being trained by {holder}; one trainer per library: wait for it to finish "
            "(watch it with `tfgrpo runs`), stop it, or train another --library")
