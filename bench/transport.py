"""The HTTP transport's cost in a burst (not a test): N concurrent chat-completion POSTs on new connections
to the fake server (latency L), sent by aiohttp and by the lean client (`tfgrpo.llm.http1.OriginPool`), in
alternating rounds on the same event loop, side by side:

    python bench/transport.py [--n 1000] [--latency 1.0] [--rounds 3]

Per round and client: `over_L` (the burst's wall time above L: what a step's critical path pays for it),
`dispatch` (until the last request is handed to the socket) and the event loop thread's CPU. The last line:
`transport_n=<N> aiohttp_over_l_ms=<a> lean_over_l_ms=<b> over_l_ratio=<a/b> aiohttp_cpu_ms=<c>
lean_cpu_ms=<d> cpu_ratio=<c/d>` (medians over the rounds)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.fake_server import FakeServer  # noqa: E402
from tfgrpo_common.event_loop import run_hot  # noqa: E402

HEADERS = {"Authorization": "Bearer sk-local", "Content-Type": "application/json"}


def _body() -> bytes:
    import orjson

    return orjson.dumps({"model": "fake", "temperature": 0.7, "max_tokens": 256,
                         "messages": [{"role": "user", "content": "What is 17 + 25?"}]})


async def _burst(n: int, call) -> tuple[float, float, float]:
    """(wall, dispatch, loop CPU) of n concurrent calls started one at a time, as the loop starts groups."""
    start, cpu = time.perf_counter(), time.thread_time()
    tasks = []
    for _ in range(n):
        tasks.append(asyncio.ensure_future(call()))
        await asyncio.sleep(0)
    dispatch = time.perf_counter() - start
    answers = await asyncio.gather(*tasks)
    assert all(b"choices" in a for a in answers)
    return time.perf_counter() - start, dispatch, time.thread_time() - cpu


async def via_aiohttp(url: str, n: int) -> tuple[float, float, float]:
    import aiohttp

    body = _body()
    async with aiohttp.ClientSession(headers=HEADERS, connector=aiohttp.TCPConnector(limit=0)) as http:
        async def call() -> bytes:
            async with http.post(url, data=body) as resp:
                return await resp.read()
        return await _burst(n, call)


async def via_lean(url: str, n: int) -> tuple[float, float, float]:
    from tfgrpo.llm.http1 import OriginPool

    body, pool = _body(), OriginPool(url, HEADERS)
    try:
        async def call() -> bytes:
            return (await pool.post(body, timeout=120)).body
        return await _burst(n, call)
    finally:
        pool.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.n < 1 or args.rounds < 1 or args.latency < 0:
        ap.error("--n and --rounds must be at least 1, --latency at least 0")
    import aiohttp  # noqa: F401 - imported before the clock, as a training process has it

    over: dict[str, list[float]] = {"aiohttp": [], "lean": []}
    cpu: dict[str, list[float]] = {"aiohttp": [], "lean": []}
    with FakeServer(args.latency, {}) as srv:
        url = srv.api_base.rstrip("/") + "/chat/completions"
        for r in range(args.rounds):
            for name, fn in (("aiohttp", via_aiohttp), ("lean", via_lean)):
                wall, dispatch, loop_cpu = run_hot(fn(url, args.n))
                over[name].append(wall - args.latency)
                cpu[name].append(loop_cpu)
                print(f"round {r + 1} {name:8s}: over L {1000 * (wall - args.latency):6.0f} ms, dispatch "
                      f"{1000 * dispatch:5.0f} ms, event loop CPU {1000 * loop_cpu:5.0f} ms", flush=True)
    a, b = statistics.median(over["aiohttp"]), statistics.median(over["lean"])
    ca, cb = statistics.median(cpu["aiohttp"]), statistics.median(cpu["lean"])
    print(f"transport_n={args.n} aiohttp_over_l_ms={1000 * a:.0f} lean_over_l_ms={1000 * b:.0f} "
          f"over_l_ratio={a / b:.2f} aiohttp_cpu_ms={1000 * ca:.0f} lean_cpu_ms={1000 * cb:.0f} "
          f"cpu_ratio={ca / cb:.2f}")


if __name__ == "__main__":
    main()
