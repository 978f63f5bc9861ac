"""Call logs: where the gateway's `CallRecord`s go. In memory (tests, short scripts), or handed to a
background writer thread that writes them in batches (training and the proxy: a call never waits for the
database; `flush()` before anything that must see them)."""

from __future__ import annotations

import queue
import threading
import time

from tfgrpo_common.chat import CallRecord


class MemoryCallLog:
    """Keeps call records in a list (tests, short scripts)."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []
        self._lock = threading.Lock()

    def record(self, rec: CallRecord) -> None:
        with self._lock:
            self.records.append(rec)


_STOP = object()


class BackgroundCallLog:
    """A `CallLog` that hands records to one worker thread writing them to `sink` (the store), so a
    reply never waits for the database. When the sink has `record_many(records)` (one statement for
    a batch), records arriving within `linger_s` of each other are written together (with `settle_s`, a batch
    also waits for a burst of records to end, up to `max_linger_s`)."""

    def __init__(self, sink, *, linger_s: float = 0.2, max_batch: int = 256, settle_s: float = 0.0,
                 max_linger_s: float | None = None) -> None:
        self.sink = sink
        self.linger_s, self.max_batch = linger_s, max_batch
        # past `linger_s`, a batch waits on while records keep coming, until none came for `settle_s`, for at most
        # `max_linger_s` in all: a write in the middle of a burst of answers takes the core the event loop needs
        self.settle_s, self.max_linger_s = settle_s, max(linger_s, max_linger_s or linger_s)
        self._last_in = 0.0  # monotonic time of the last record handed in
        self._queue: queue.Queue = queue.Queue()
        self._wake = threading.Event()  # set by flush(): write now, without the rest of the linger
        # records handed in and records the writer is done with (written or given up on), so that a flush waits
        # for what was handed in before it, not for records that keep arriving while it waits
        self._seq = threading.Lock()
        self._done = threading.Condition(self._seq)  # notified when the writer is done with a batch
        self._handed = self._finished = 0
        self._thread = threading.Thread(target=self._run, name="tfgrpo-call-log", daemon=True)
        self._thread.start()

    def record(self, rec: CallRecord) -> None:
        with self._seq:
            self._handed += 1
            self._last_in = time.monotonic()
        self._queue.put(rec)

    def _batch(self) -> list:
        """Wait for a record, let `linger_s` pass (and with `settle_s`, the records' burst settle), then take what
        came meanwhile (up to `max_batch`). The writer wakes once per batch: waking it per record costs the event
        loop a thread switch per call under load. A sink without `record_many` gets what is queued now, without
        the linger. A flush ends the wait; the stop sentinel ends the batch."""
        batch = [self._queue.get()]
        if batch[0] is _STOP:
            return batch
        if getattr(self.sink, "record_many", None) is not None and self._queue.qsize() < self.max_batch - 1:
            self._linger(time.monotonic())  # (a full batch already waiting is written at once)
            self._wake.clear()
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            batch.append(item)
            if item is _STOP:
                break
        return batch

    def _linger(self, start: float) -> None:
        limit = start + self.max_linger_s
        until = start + self.linger_s
        while True:
            if self._wake.wait(max(0.0, until - time.monotonic())):
                return  # a flush: write now
            if self.settle_s <= 0:
                return
            with self._seq:
                settled = self._last_in + self.settle_s
            until = min(settled, limit)
            if until <= time.monotonic():
                return

    def _write(self, records: list[CallRecord]) -> None:
        """Write a batch; never raise (the CallLog contract; the store logs its own failures). A failing
        record costs only itself: a batch the sink refuses as a whole is written again record by record, and
        the records after a failing one are still written."""
        if len(records) > 1 and getattr(self.sink, "record_many", None) is not None:
            try:
                self.sink.record_many(records)
                return
            except Exception:
                pass
        for rec in records:
            try:
                self.sink.record(rec)
            except Exception:
                pass

    def _run(self) -> None:
        while True:
            batch = self._batch()
            records = [r for r in batch if r is not _STOP]
            try:
                if records:
                    self._write(records)
            finally:
                with self._done:
                    self._finished += len(records)
                    self._done.notify_all()
            if len(records) < len(batch):
                return

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record handed in so far is written (the writer skips the rest of its linger);
        False on timeout. Records handed in while it waits are not waited for: under a steady stream of calls,
        waiting for an empty queue kept the writer writing small batches back to back."""
        deadline = time.monotonic() + timeout
        with self._done:  # woken when a batch is done (polling it cost a flush up to 5 ms past the write)
            target = self._handed
            while self._finished < target:
                self._wake.set()
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return self._finished >= target
                self._done.wait(min(left, 0.5))
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the worker."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._wake.set()
            self._thread.join(timeout)
