"""State shared by every ExperienceStore open on the same file (or Postgres database) in one process.

DuckDB gives all connections to one file in a process the same database, so two stores on one
path see each other's writes. They share one `FileSession` (the connection, opened per unit of work,
and the lock serializing use of the file) and the in-memory indexes (and their row caches). The entry
is dropped when the last store on the path closes, so a later open starts from the file again.
Stores on one Postgres URL share a `PgSession` (one connection) and the indexes the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .session import FileSession


@dataclass
class Shared:
    """Per-file state: indexes by library, the session (connection and lock), open store count."""

    session: Any  # FileSession, or pg_session.PgSession
    indexes: dict[str, Any] = field(default_factory=dict)
    users: int = 0


_REGISTRY: dict[str, Shared] = {}
_GUARD = threading.Lock()


def key_for(path: Path, owner: object) -> str:
    """Registry key: the resolved file path (":memory:" databases are private to their store)."""
    if str(path) == ":memory:":
        return f":memory:{id(owner)}"
    return str(path.expanduser().resolve())


def acquire(key: str, path: Path, writable: bool, session: Callable[[], Any] | None = None) -> Shared:
    """The shared state for `key`, created on first use (with `session()`, default a `FileSession` on
    `path`); counts one more user (and writer)."""
    with _GUARD:
        entry = _REGISTRY.get(key)
        if entry is None:
            entry = _REGISTRY[key] = Shared(session() if session is not None else FileSession(path))
        entry.users += 1
        entry.session.writers += int(writable)
        return entry


def release(key: str, writable: bool) -> None:
    """One user fewer; the last one closes the connection and drops the entry."""
    with _GUARD:
        entry = _REGISTRY.get(key)
        if entry is None:
            return
        entry.users -= 1
        entry.session.writers -= int(writable)
        if entry.users <= 0:
            del _REGISTRY[key]
            entry.session.close()
