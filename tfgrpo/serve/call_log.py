"""The proxy's call log: records go to the store from a background thread (a reply never waits for the
database), and the proxy knows how many of its calls are committed.

"Acknowledged as logged": a call is acknowledged once `GET /health` has counted it in `calls.logged`,
the number of this process's call rows whose INSERT has committed in the store. A row is committed at
most about `linger_s` (0.2 s) after its reply ended, in a batch. A process killed at any moment (SIGKILL)
leaves in the store at least every row it had acknowledged; rows still `pending` may be lost with it.

The store's `record_many` never raises (the `CallLog` contract): it logs a failed write and returns False.
Such a batch is not counted as logged; it is retried with backoff (the INSERT skips ids already stored,
so a retry cannot duplicate a row) for up to `retry_s` seconds, then counted as `lost` and said so in the
log.
"""

from __future__ import annotations

import logging
import threading
import time

from tfgrpo.llm.call_log import BackgroundCallLog
from tfgrpo_common.chat import CallRecord

log = logging.getLogger("tfgrpo.serve.call_log")

class ProxyCallLog(BackgroundCallLog):
    """`BackgroundCallLog` that counts what it committed (`status()`) and retries a failed batch."""

    def __init__(self, store, *, linger_s: float = 0.2, max_batch: int = 256, retry_s: float = 30.0) -> None:
        self.retry_s = retry_s
        self._counts = threading.Lock()
        self.received = self.logged = self.lost = 0
        super().__init__(store, linger_s=linger_s, max_batch=max_batch)

    def record(self, rec: CallRecord) -> None:
        with self._counts:
            self.received += 1
        super().record(rec)

    def _write(self, records: list[CallRecord]) -> None:
        deadline = time.monotonic() + self.retry_s
        pause = 0.05
        while not self._write_once(records):
            if time.monotonic() + pause > deadline:
                with self._counts:
                    self.lost += len(records)
                log.error("the call log lost %d call record(s): the store refused them for %.0f s (see the "
                          "warnings above); check the store file and its disk", len(records), self.retry_s)
                return
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
        with self._counts:
            self.logged += len(records)

    def _write_once(self, records: list[CallRecord]) -> bool:
        try:
            many = getattr(self.sink, "record_many", None)
            if many is not None:
                result = many(records)
            else:
                results = [self.sink.record(rec) for rec in records]
                result = False if False in results else None
        except Exception as exc:  # a sink that raises: the batch is not written
            log.warning("call log write failed: %s", exc)
            return False
        return result is not False

    def status(self) -> dict[str, int]:
        """`logged`: rows committed; `pending`: received, not yet committed; `lost`: given up on."""
        with self._counts:
            return {"logged": self.logged, "pending": self.received - self.logged - self.lost, "lost": self.lost}

