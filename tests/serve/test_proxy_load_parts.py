"""The two parts of the proxy that load leans on, against a real store: the call log counts only what
the store committed (what /health acknowledges) and retries a refused batch without duplicating rows;
the prior cache never makes a request wait for the store to re-read "latest"."""

from __future__ import annotations

import asyncio
import threading

import pytest

from experience_store import ExperienceStore, HashEmbedder, Op, OpKind
from tfgrpo.serve.call_log import ProxyCallLog
from tfgrpo.serve.config import PriorChoice, ProxyConfig
from tfgrpo.serve.priors import PriorCache, ReadOnlyLibrary
from tfgrpo_common.chat import CallRecord

ASK = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture()
def store(tmp_path):
    s = ExperienceStore(tmp_path / "store.duckdb", embedder=HashEmbedder())
    s.apply("lib", [Op(kind=OpKind.ADD, text="Check the units.")])
    yield s
    s.close()


def records(n: int, run_id: str = "run") -> list[CallRecord]:
    return [CallRecord(model="m", stage="proxy", request=ASK, response=f"r{i}", run_id=run_id) for i in range(n)]


def test_call_log_counts_committed_rows(store):
    log = ProxyCallLog(store, linger_s=0.02)
    for rec in records(5):
        log.record(rec)
    assert log.flush(10)
    assert log.status() == {"logged": 5, "pending": 0, "lost": 0}
    log.close()
    assert [c["response"] for c in store.calls(run_id="run")] == [f"r{i}" for i in range(5)]


class FailsAfterCommit:
    """The store, except that the first `n` batches raise after they were committed (a connection cut
    after COMMIT): the retry must not write them twice."""

    def __init__(self, store, n: int) -> None:
        self.store, self.left = store, n

    def record_many(self, recs) -> None:
        self.store.record_many(recs)
        if self.left:
            self.left -= 1
            raise OSError("connection reset after commit")


def test_call_log_retries_a_failed_batch_without_duplicates(store):
    log = ProxyCallLog(FailsAfterCommit(store, 2), linger_s=0.02)
    for rec in records(4):
        log.record(rec)
    assert log.flush(10)
    log.close()
    assert log.status() == {"logged": 4, "pending": 0, "lost": 0}
    assert len(store.calls(run_id="run")) == 4


def test_call_log_does_not_count_what_the_store_refused(tmp_path):
    path = tmp_path / "ro.duckdb"
    ExperienceStore(path, embedder=HashEmbedder()).close()
    with ExperienceStore(path, read_only=True) as ro:  # record_many logs a warning and returns: nothing written
        log = ProxyCallLog(ro, linger_s=0.02, retry_s=0.2)
        for rec in records(3):
            log.record(rec)
        assert log.flush(10)
        log.close()
        assert log.status() == {"logged": 0, "pending": 0, "lost": 3}
        assert ro.calls() == []


class GatedStore:
    """The store, with `current_version` held at a gate (another process holding the file) and the
    version reads counted."""

    def __init__(self, store) -> None:
        self.store = store
        self.gate = threading.Event()
        self.gate.set()
        self.reads = 0

    def current_version(self, library):
        self.reads += 1
        assert self.gate.wait(30), "the gate was never opened"
        return self.store.current_version(library)

    def resolve_version(self, library, version):
        self.reads += 1
        return self.store.resolve_version(library, version)

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_requests_never_wait_for_the_latest_version_reread(store):
    gated = GatedStore(store)
    cache = PriorCache(ReadOnlyLibrary(gated), ProxyConfig(library="lib"), latest_ttl_s=0.0)
    latest = PriorChoice("lib", None, None, None)

    async def apply():
        return await asyncio.wait_for(cache.apply(latest, ASK), timeout=20)

    prior, _, ids = asyncio.run(apply())
    assert (prior.version, ids) == (1, [1])
    store.apply("lib", [Op(kind=OpKind.ADD, text="Box the answer.")])
    gated.gate.clear()  # the store is busy from now on
    prior, _, ids = asyncio.run(apply())
    assert (prior.version, ids) == (1, [1]), "served with the version it had while the re-read waits"
    gated.gate.set()
    for _ in range(200):  # the re-read finishes on its own thread
        if cache._latest["lib"][1] == 2:
            break
        threading.Event().wait(0.05)
    prior, _, ids = asyncio.run(apply())
    assert (prior.version, ids) == (2, [1, 2]), "the new version is picked up without a restart"


def test_a_pinned_version_is_read_once(store):
    gated = GatedStore(store)
    cache = PriorCache(ReadOnlyLibrary(gated), ProxyConfig(library="lib"))
    pinned = PriorChoice("lib", 1, None, None)
    asyncio.run(cache.apply(pinned, ASK))  # resolves the version and builds the prior
    gated.reads = 0
    for _ in range(5):
        prior, _, ids = asyncio.run(cache.apply(pinned, ASK))
        assert (prior.version, ids) == (1, [1])
    assert gated.reads == 0, "the request path reads no version once it is known"
