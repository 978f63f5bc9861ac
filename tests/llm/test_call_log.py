"""The training call log (a writer thread over a real DuckDB store): a flush waits for the records handed in
before it, not for the ones that keep arriving while it waits; a record the sink refuses costs only itself."""

from __future__ import annotations

import threading
import time

import pytest

from experience_store import ExperienceStore, HashEmbedder
from tfgrpo.llm.call_log import BackgroundCallLog
from tfgrpo_common.chat import CallRecord


def test_a_flush_under_a_steady_stream_returns_once_what_came_before_it_is_written(tmp_path):
    with ExperienceStore(tmp_path / "s.duckdb", embedder=HashEmbedder()) as store:
        log = BackgroundCallLog(store, linger_s=0.2)
        stop = threading.Event()
        handed: list[str] = []

        def stream() -> None:  # a call finishing every 2 ms until told to stop
            i = 0
            while not stop.is_set():
                rec = CallRecord(model="m", stage="rollout", run_id="r", id=f"c{i}")
                handed.append(rec.id)
                log.record(rec)
                i += 1
                time.sleep(0.002)

        producer = threading.Thread(target=stream)
        producer.start()
        try:
            time.sleep(0.3)
            before = list(handed)
            assert log.flush(60.0)
            still_streaming = not stop.is_set() and producer.is_alive()
            stored = {c["id"] for c in store.calls(run_id="r")}
        finally:
            stop.set()
            producer.join()
        assert before and set(before) <= stored  # everything handed in before the flush is written
        assert still_streaming  # and the flush did not wait for the stream to end
        log.close()
        assert len(store.calls(run_id="r")) == len(handed)


class _HeldSink:
    """A sink whose first write waits for `release`, so that the records after it queue up and reach the writer
    as one batch; `boom` fails. With `many`, batches go through `record_many`, which refuses any batch holding
    `boom` as a whole."""

    def __init__(self, many: bool) -> None:
        self.rows: list[str] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        if many:
            self.record_many = self._many

    def record(self, rec: CallRecord) -> None:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(10)
        if rec.model == "boom":
            raise RuntimeError("disk full")
        self.rows.append(rec.model)

    def _many(self, recs: list[CallRecord]) -> None:
        if any(r.model == "boom" for r in recs):
            raise RuntimeError("disk full")
        self.rows.extend(r.model for r in recs)


@pytest.mark.parametrize("many", [False, True])
def test_a_failing_record_costs_only_itself_within_a_batch(many):
    sink = _HeldSink(many)
    log = BackgroundCallLog(sink, linger_s=0.0)
    log.record(CallRecord(model="first"))
    assert sink.entered.wait(10)  # the writer holds "first"; what follows queues behind it
    for name in ["a", "boom", "b", "c"]:
        log.record(CallRecord(model=name))
    sink.release.set()
    assert log.flush(10.0)
    log.close()
    assert sink.rows == ["first", "a", "b", "c"]


class _Batches:
    def __init__(self) -> None:
        self.batches: list[tuple[float, int]] = []  # (when written, how many)

    def record(self, rec: CallRecord) -> None:
        self.record_many([rec])

    def record_many(self, recs: list[CallRecord]) -> None:
        self.batches.append((time.monotonic(), len(recs)))


def test_a_burst_of_records_is_written_after_it_settles_within_the_longest_linger():
    """With `settle_s`, a batch past its `linger_s` waits while records keep coming (one every 5 ms) and is
    written once none came for `settle_s`: one batch, after the burst. `max_linger_s` bounds the wait."""
    def burst(log: BackgroundCallLog, n: int) -> float:
        for i in range(n):
            log.record(CallRecord(model="m", id=f"c{i}"))
            time.sleep(0.005)
        return time.monotonic()

    sink = _Batches()
    log = BackgroundCallLog(sink, linger_s=0.01, settle_s=1.0, max_linger_s=30.0)
    last = burst(log, 60)
    deadline = time.monotonic() + 10
    while sum(n for _, n in sink.batches) < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    log.close()
    assert [n for _, n in sink.batches] == [60] and sink.batches[0][0] >= last
    bounded = _Batches()
    log = BackgroundCallLog(bounded, linger_s=0.05, settle_s=0.1, max_linger_s=0.1)
    burst(log, 60)
    assert log.flush(10.0)
    log.close()
    assert len(bounded.batches) > 1 and sum(n for _, n in bounded.batches) == 60
