"""Results of completed learner calls, keyed by (run, step, stage, item), so a resumed run never repeats
an LLM call that already finished. Lives in the same SQLite file as the LangGraph checkpoints."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from tfgrpo.loop.group_commit import GroupCommit


class Memo:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        # a put survives the process being killed; NORMAL skips the fsync per put that FULL pays (a resume
        # memo needs no durability against power loss: a lost entry is one LLM call made again)
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.execute("CREATE TABLE IF NOT EXISTS tfgrpo_memo (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._lock = threading.Lock()
        self._closer: threading.Thread | None = None  # `close_soon`'s
        # the stored keys by prefix (a key's text before its first ":", a run id or "gate"), read on the first
        # get of a prefix: a new run's every lookup misses, and a set answers that without a query on the
        # event loop (one per learner call). Keys of a prefix are written by one process only (the run's, or
        # the library's trainer for "gate:<library>")
        self._keys: dict[str, set[str]] = {}

    @staticmethod
    def _prefix(key: str) -> str | None:
        prefix, sep, _ = key.partition(":")
        return prefix if sep else None

    def _known(self, key: str) -> set[str] | None:
        prefix = self._prefix(key)
        if prefix is None:
            return None
        known = self._keys.get(prefix)
        if known is None:
            rows = self._con.execute("SELECT key FROM tfgrpo_memo WHERE key >= ? AND key < ?",
                                     (prefix + ":", prefix + ";")).fetchall()  # ";" follows ":"
            known = self._keys[prefix] = {k for (k,) in rows}
        return known

    def get(self, key: str) -> Any | None:
        with self._lock:
            known = self._known(key)
            if known is not None and key not in known:
                return None
            row = self._con.execute("SELECT value FROM tfgrpo_memo WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: Any) -> None:
        self.put_many({key: value})

    def put_many(self, items: dict[str, Any]) -> None:
        """Several puts in one transaction: all of them or none survive the process being killed."""
        if not items:
            return
        with self._lock:
            self._con.execute("BEGIN")
            try:
                self._con.executemany("INSERT OR REPLACE INTO tfgrpo_memo VALUES (?, ?)",
                                      [(k, json.dumps(v)) for k, v in items.items()])
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")
            for key in items:
                known = self._keys.get(self._prefix(key))
                if known is not None:
                    known.add(key)

    def held(self) -> HeldPuts:
        """A view of this memo whose puts wait for `HeldPuts.commit()`."""
        return HeldPuts(self)

    def group_commit(self) -> GroupCommit[dict[str, Any]]:
        """Puts of concurrent tasks written together, off the event loop (`HeldPuts.commit_with`): the groups of a
        step whose learner answers arrive in one burst share a transaction instead of one each on the loop."""
        return GroupCommit(lambda parts: self.put_many({k: v for part in parts for k, v in part.items()}))

    def close_soon(self) -> None:
        """Start closing in a worker thread (`close` waits for it): closing writes the log into the file (5-12 ms),
        which the run's last commit overlaps. Nothing may use the memo after this."""
        with self._lock:
            if self._closer is None:
                self._closer = threading.Thread(target=self._con.close, name="tfgrpo-memo-close", daemon=True)
                self._closer.start()

    def close(self) -> None:
        if self._closer is not None:
            self._closer.join()
        else:
            self._con.close()


class HeldPuts:
    """Reads through to a `Memo`; puts are held until `commit()`. A group's learner calls run while its
    rollouts are still being stored, and their results are memoized only after the rollouts are: a step killed
    in between samples the group again on resume and asks the learner about the new rollouts, never pairing a
    memoized answer with rollouts it did not see."""

    def __init__(self, memo: Memo) -> None:
        self.memo = memo
        self._held: dict[str, Any] = {}

    def get(self, key: str) -> Any | None:
        return self._held[key] if key in self._held else self.memo.get(key)

    def put(self, key: str, value: Any) -> None:
        self._held[key] = value

    def commit(self) -> None:
        self.memo.put_many(self._held)
        self._held = {}

    async def commit_with(self, commits: GroupCommit[dict[str, Any]]) -> None:
        """`commit()` through the memo's `group_commit()`: returns once the puts are written."""
        held, self._held = self._held, {}
        if held:
            await commits.submit([held])
