"""Results of completed learner calls, keyed by (run, step, stage, item), so a resumed run never repeats
an LLM call that already finished. Lives in the same SQLite file as the LangGraph checkpoints."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any


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

    def get(self, key: str) -> Any | None:
        with self._lock:
            row = self._con.execute("SELECT value FROM tfgrpo_memo WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._con.execute("INSERT OR REPLACE INTO tfgrpo_memo VALUES (?, ?)", (key, json.dumps(value)))

    def close(self) -> None:
        self._con.close()
