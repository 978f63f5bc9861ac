"""CPU per call of the gateway itself (not a test): `Gateway.chat` over an in-process backend that answers at
once, against the backend alone, side by side in one run (each measured twice; the lower is kept).

    python bench/gateway_cpu.py [--calls 20000] [--concurrency 256]

Last line: `gateway_us_per_call=<x> backend_us_per_call=<y> calls=<n>` (the gateway's own CPU is the first).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tfgrpo.llm.backends import RawChoice, RawResponse  # noqa: E402
from tfgrpo.llm.gateway import Gateway  # noqa: E402


class InstantBackend:
    model, native_n = "instant", False

    async def send(self, messages, *, temperature, max_tokens, n, seed, timeout, extra=None, stage="chat"):
        await asyncio.sleep(0)
        return RawResponse([RawChoice("The answer is \\boxed{4}.", "stop")], prompt_tokens=20, completion_tokens=8)

    async def aclose(self) -> None:
        pass


class CountingLog:
    def __init__(self) -> None:
        self.n = 0

    def record(self, rec) -> None:
        self.n += 1


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _calls(gw: Gateway, n: int, concurrency: int, backend_only: bool) -> None:
    sem = asyncio.Semaphore(concurrency)
    msgs = [{"role": "user", "content": "What is 2 + 2?"}]

    async def one(i: int) -> None:
        async with sem:
            if backend_only:
                await gw.backend.send(msgs, temperature=0.7, max_tokens=64, n=1, seed=i, timeout=30)
            else:
                await gw.chat(msgs, temperature=0.7, max_tokens=64, stage="rollout", seed=i, meta={"rollout_id": str(i)})

    await asyncio.gather(*[one(i) for i in range(n)])


def us_per_call(n: int, concurrency: int, backend_only: bool) -> float:
    gw = Gateway(InstantBackend(), concurrency=concurrency, timeout_s=30, call_log=CountingLog())
    start = cpu_s()
    asyncio.run(_calls(gw, n, concurrency, backend_only))
    return (cpu_s() - start) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=256)
    a = ap.parse_args()
    if not 100 <= a.calls <= 10_000_000 or not 1 <= a.concurrency <= 100_000:
        ap.error("--calls must be 100-10000000 and --concurrency 1-100000")
    backend = min(us_per_call(a.calls, a.concurrency, True) for _ in range(2))
    total = min(us_per_call(a.calls, a.concurrency, False) for _ in range(2))
    print(f"backend alone {backend:.1f} us/call; through the gateway {total:.1f} us/call")
    print(f"gateway_us_per_call={total - backend:.1f} backend_us_per_call={backend:.1f} calls={a.calls}")


if __name__ == "__main__":
    main()
