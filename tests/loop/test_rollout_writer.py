"""Group commit of rollouts on a real DuckDB store: groups that finish together share a transaction, each
returns only once its rows are stored with their call rows flushed first, and a failed write reaches every
group that waited on it."""

from __future__ import annotations

import asyncio
import time

import pytest

from experience_store import ExperienceStore, HashEmbedder, RolloutRow
from tfgrpo.errors import StoreError
from tfgrpo.loop.rollout_writer import RolloutWriter


def _rows(run: str, g: int) -> list[RolloutRow]:
    return [RolloutRow(id=f"{run}:0:q{g}:{i}", run_id=run, step=0, question_id=f"q{g}", question="2+2?",
                       completion="4", reward=1.0) for i in range(5)]


def test_groups_share_transactions_and_each_waits_for_its_rows(tmp_path):
    with ExperienceStore(tmp_path / "s.duckdb", embedder=HashEmbedder()) as store:
        run = store.create_run("lib", "train", {}, "m")
        flushes: list[float] = []

        def flush_calls() -> None:  # a call-log flush that takes a while, as on a busy store
            flushes.append(time.monotonic())
            time.sleep(0.05)

        writer = RolloutWriter(store, flush_calls)
        stored_when_returned: list[int] = []

        async def group(g: int) -> None:
            await asyncio.sleep(0.001 * g)
            await writer.write(_rows(run, g))
            stored_when_returned.append(len([r for r in store.rollouts(run) if r.question_id == f"q{g}"]))

        async def main() -> None:
            await asyncio.gather(*[group(g) for g in range(20)])

        asyncio.run(main())
        assert len(store.rollouts(run)) == 100
        assert stored_when_returned == [5] * 20  # every group saw its own rows stored when write returned
        assert 1 <= writer.transactions < 20 and len(flushes) == writer.transactions  # a flush before each write


def test_a_failed_write_reaches_every_waiting_group(tmp_path):
    with ExperienceStore(tmp_path / "s.duckdb", embedder=HashEmbedder()) as store:
        run = store.create_run("lib", "train", {}, "m")

    def flush_calls() -> None:
        time.sleep(0.02)

    writer = RolloutWriter(store, flush_calls)  # the store is closed: writing fails

    async def main() -> list:
        return await asyncio.gather(*[writer.write(_rows(run, g)) for g in range(5)], return_exceptions=True)

    results = asyncio.run(main())
    assert len(results) == 5 and all(isinstance(r, StoreError) for r in results), results
    with pytest.raises(StoreError):
        asyncio.run(writer.write(_rows(run, 9)))


def test_a_burst_of_groups_is_written_once_it_settles(tmp_path):
    """Groups finishing 2 ms apart (a burst of answers): the write waits until none has finished for `settle_s`,
    then stores the whole burst in one transaction, after the burst; a burst longer than `max_settle_s` is
    written at that bound."""
    with ExperienceStore(tmp_path / "s.duckdb", embedder=HashEmbedder()) as store:
        run = store.create_run("lib", "train", {}, "m")
        writes: list[float] = []

        def flush_calls() -> None:
            writes.append(time.monotonic())

        async def burst(writer: RolloutWriter, groups: range) -> float:
            last = 0.0

            async def group(g: int) -> None:
                nonlocal last
                await asyncio.sleep(0.002 * (g - groups.start))
                last = time.monotonic()
                await writer.write(_rows(run, g))

            await asyncio.gather(*[group(g) for g in groups])
            return last

        settled = RolloutWriter(store, flush_calls, settle_s=0.2, max_settle_s=30.0)
        last = asyncio.run(burst(settled, range(0, 40)))
        assert settled.transactions == 1 and writes[0] >= last  # one write, after the burst's last group
        assert len(store.rollouts(run)) == 200
        writes.clear()
        bounded = RolloutWriter(store, flush_calls, settle_s=0.2, max_settle_s=0.02)
        asyncio.run(burst(bounded, range(40, 200)))  # 320 ms of groups, a bound of 20 ms: several writes
        assert bounded.transactions > 1 and len(store.rollouts(run)) == 1000
