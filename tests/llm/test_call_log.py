"""The training call log (a writer thread over a real DuckDB store): a flush waits for the records handed in
before it, not for the ones that keep arriving while it waits."""

from __future__ import annotations

import threading
import time

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
