"""Group commit for rollouts: the groups of a stage that finish while a write is under way share the next
transaction, written off the event loop. Each group waits until its rows are stored, and the call log is
flushed first in the same worker, so a stored rollout always has its call row and a resumed step repeats
no group whose rollouts were stored."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from experience_store import RolloutRow


class RolloutWriter:
    def __init__(self, store: Any, flush_calls: Callable[[], None]) -> None:
        self.store, self.flush_calls = store, flush_calls
        self._pending: list[tuple[list[RolloutRow], asyncio.Future]] = []
        self._drainer: asyncio.Task | None = None
        self.transactions = 0  # how many writes the groups shared

    async def write(self, rows: list[RolloutRow]) -> None:
        """Store `rows`; returns once they are committed (raises what the store raised)."""
        if not rows:
            return
        done = asyncio.get_running_loop().create_future()
        self._pending.append((rows, done))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await asyncio.to_thread(self._write, [r for rows, _ in batch for r in rows])
                except Exception as exc:  # each waiting group raises it
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._drainer = None

    def _write(self, rows: list[RolloutRow]) -> None:
        self.flush_calls()
        self.store.add_rollouts(rows)
        self.transactions += 1
