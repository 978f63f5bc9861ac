"""`tfgrpo serve` as a real process under concurrent load: upstream faults come back as OpenAI-shaped
errors and every call is in the log; a SIGKILLed proxy restarts on the same store with every call it had
acknowledged as logged (`tfgrpo.serve.call_log`). Figures (throughput, latency, memory) are the bench's
job (`bench/proxy_load.py`); these tests check what can break."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest

from bench.fake_server import FakeServer
from bench.proxy_load import expected_error, request_body, run_load
from bench.proxy_process import ProxyProcess, logged_calls, make_store


@pytest.fixture()
def db(tmp_path):
    path = tmp_path / "store.duckdb"
    make_store(path)
    return path


def test_load_with_upstream_faults_gets_openai_errors_and_a_full_log(db, tmp_path):
    faults = {"fault_rate": 0.1, "fault_seed": 3, "hang_s": 3.0}
    args = ("--max-attempts", "1", "--timeout", "1", "--concurrency", "64")
    with FakeServer(0.02, workdir=tmp_path, **faults) as upstream, \
            ProxyProcess(db, upstream.api_base, workdir=tmp_path, args=args) as proxy:
        run_id = proxy.health()["run_id"]
        side, _, _ = asyncio.run(run_load(proxy.base_url, 40, 5.0))
        assert proxy.proc.poll() is None and proxy.health()["status"] == "ok", "the proxy stays up"
        injected = upstream.stats()["faults"]
        assert proxy.stop() == 0
        output = proxy.output()
    outcomes = side.outcomes
    bad = [o.detail for o in outcomes if o.kind == "bad"]
    assert not bad, f"answers that are not OpenAI-shaped: {bad[:5]}"
    failed = [o for o in outcomes if o.kind == "error"]
    assert all(expected_error(o) for o in failed), sorted({(o.status, o.detail) for o in failed})
    assert not any(o.status == 500 for o in outcomes), "no internal error from the proxy itself"
    assert min(injected.values()) > 0, injected
    seen = {o.status for o in failed if not o.stream} | {"sse" for o in failed if o.stream and o.status == 200}
    assert {502, 504, "sse"} <= seen, f"500s and resets -> 502, hangs -> 504, resets mid-stream -> SSE: {seen}"
    rows = logged_calls(db, run_id)
    assert len(rows) == len(outcomes), "one call-log row per request"
    assert sum(bool(r["error"]) for r in rows) == len(failed), "each failed call is logged with its error"
    assert "Traceback" not in output, output[-3000:]


async def _load_then_kill(proxy: ProxyProcess, clients: int, seconds: float, kill_after: float) -> tuple[int, int]:
    """Load the proxy; poll /health; SIGKILL it once `kill_after` s have passed and some calls are
    acknowledged. Returns (the last `logged` count /health reported before the kill, requests sent)."""
    stop = asyncio.Event()
    load = asyncio.create_task(run_load(proxy.base_url, clients, seconds, stop=stop))
    acked, start = 0, time.monotonic()
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            health = (await client.get(proxy.base_url.removesuffix("/v1") + "/health")).json()
            acked = health["calls"]["logged"]
            if time.monotonic() - start > kill_after and acked > 0 and health["calls"]["pending"] > 0:
                os.kill(proxy.pid, signal.SIGKILL)
                stop.set()
                break
            assert time.monotonic() - start < seconds, f"no call acknowledged in time: {health}"
            await asyncio.sleep(0.05)
    side, _, _ = await load
    return acked, len(side.outcomes)


def test_sigkill_mid_load_then_restart_keeps_every_acknowledged_call(db, tmp_path):
    with FakeServer(0.02, workdir=tmp_path) as upstream:
        first = ProxyProcess(db, upstream.api_base, workdir=tmp_path).start()
        try:
            killed_run = first.health()["run_id"]
            acked, sent = asyncio.run(_load_then_kill(first, 20, 6.0, kill_after=2.0))
            assert first.proc.wait(10) == -signal.SIGKILL
        finally:
            first.kill()
        with ProxyProcess(db, upstream.api_base, workdir=tmp_path) as second:
            new_run = second.health()["run_id"]
            r = httpx.post(second.base_url + "/chat/completions", json=request_body(1, False), timeout=30)
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
            assert second.stop() == 0
    rows = logged_calls(db, killed_run)
    assert acked <= len(rows) <= sent, f"acknowledged {acked}, in the log {len(rows)}, sent {sent}"
    assert all(row["request"] and (row["response"] or row["error"]) for row in rows), "rows are whole"
    assert len(logged_calls(db, new_run)) == 1, "the restarted proxy logs its calls"
