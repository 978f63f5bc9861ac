"""Group commit: what concurrent tasks of a step hand in while a write is under way goes into the next write,
made off the event loop. Each task waits until its items are written, and a failed write reaches every task
that waited on it.

`settle_s`: before a write, wait until nothing was handed in for `settle_s` (at most `max_settle_s`). In a
burst of a thousand answers the event loop has the next requests to send; a write started in the middle of
it (a thread building rows, DuckDB inserting them) takes the core the loop needs, and the burst's last request
leaves later. Waiting for the burst to settle writes the same rows after it, in fewer transactions."""

from __future__ import annotations

import asyncio
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    def __init__(self, write: Callable[[list[T]], None], *, settle_s: float = 0.0, max_settle_s: float = 0.0) -> None:
        self._write = write
        self.settle_s, self.max_settle_s = settle_s, max(settle_s, max_settle_s)
        self._pending: list[tuple[list[T], asyncio.Future]] = []
        self._drainer: asyncio.Task | None = None
        self._last = 0.0  # loop time of the last hand-in
        self.transactions = 0  # how many writes the tasks shared

    async def submit(self, items: list[T]) -> None:
        """Write `items`; returns once they are written (raises what the write raised)."""
        if not items:
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._pending.append((items, done))
        self._last = loop.time()
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        await done

    async def _settle(self) -> None:
        """Wait until nothing was handed in for `settle_s`, or `max_settle_s` have passed."""
        if self.settle_s <= 0:
            return
        loop = asyncio.get_running_loop()
        limit = loop.time() + self.max_settle_s
        while True:
            wait = min(self._last + self.settle_s, limit) - loop.time()
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._settle()
                batch, self._pending = self._pending, []
                try:
                    await asyncio.to_thread(self._write, [item for items, _ in batch for item in items])
                    self.transactions += 1
                except Exception as exc:  # each waiting task raises it
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._drainer = None
