"""State shared by every ExperienceStore open on the same file in one process.

DuckDB gives all connections to one file in a process the same database, so two stores on one
path see each other's writes. They must also share the in-memory indexes (and their row caches)
and one lock, or one store would serve rows another has changed. The entry is dropped when the
last store on the path closes, so a later open starts from the file again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Shared:
    """Per-file state: indexes by library, the lock serializing use of the file, open store count."""

    indexes: dict[str, Any] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    users: int = 0


_REGISTRY: dict[str, Shared] = {}
_GUARD = threading.Lock()


def key_for(path: Path, owner: object) -> str:
    """Registry key: the resolved file path (":memory:" databases are private to their store)."""
    if str(path) == ":memory:":
        return f":memory:{id(owner)}"
    return str(path.expanduser().resolve())


def acquire(key: str) -> Shared:
    """The shared state for `key`, created on first use; counts one more user."""
    with _GUARD:
        entry = _REGISTRY.setdefault(key, Shared())
        entry.users += 1
        return entry


def release(key: str) -> None:
    """One user fewer; the last one drops the entry."""
    with _GUARD:
        entry = _REGISTRY.get(key)
        if entry is None:
            return
        entry.users -= 1
        if entry.users <= 0:
            del _REGISTRY[key]
