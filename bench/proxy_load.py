"""Does `tfgrpo serve` hold load? Many concurrent clients through a real proxy process (not a test).

Three processes on loopback: the fake OpenAI upstream (`bench/fake_server.py`, a fixed latency, its own
process), `tfgrpo serve` in front of it (its own process, so the memory read is the proxy's), and this
one, an asyncio + httpx client. `--clients` clients (default 200; every other one streams) call the
proxy in a loop for `--seconds` (default 60); beside them, a tenth as many clients run the same client
code against the upstream directly, so the proxy's added latency is measured in the same run, under
the same load on the machine:

    added latency at p50 / p99 = proxy's p50 / p99 - direct p50 / p99   (successful calls, to last byte)

An error is any proxy call that is not a complete answer: an HTTP error status, a body that is not a
chat completion, a stream that ends without `data: [DONE]`, or a transport failure. The proxy's memory
is sampled from /proc/<pid>/status every 20 ms (VmRSS): `rss_start_mb` is the peak in the sixth of the
run after the ramp-up (the first sixth, at most 10 s), `rss_end_mb` the peak in the last sixth; flat (no
growth from the one to the other) is the goal. The run's overall peak (VmHWM) and when it happened are
printed beside them. After the load the proxy is
stopped (SIGTERM: it flushes its call log) and its serve run's rows in the store are counted: as many as
requests sent means nothing was lost.

`--faults`: the upstream answers 10% of calls (seeded) with a 500, a hang past the proxy's timeout (1 s),
or a TCP reset (mid-stream for streams), and the proxy makes one attempt per call. Then a proxy error is
expected to be OpenAI-shaped: status 502/504 with `{"error": {"message", "type", ...}}`, or an SSE event
`data: {"error": {...}}` in a stream; `errors` counts everything else (a 500 from the proxy itself, a
malformed answer, a dropped connection), and the log must hold one row with the error per failed call.

    python bench/proxy_load.py                    # 200 clients, 60 s
    python bench/proxy_load.py --quick            # 20 s
    python bench/proxy_load.py --faults [--quick]
    python bench/proxy_load.py --clients 50 --seconds 10

Last line: `requests=<n> errors=<n> rps=<x> p50_added_ms=<x> p99_added_ms=<x> rss_start_mb=<x>
rss_end_mb=<x> log_rows=<n>`.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.chat_call import Outcome, call, request_body  # noqa: E402
from bench.fake_server import FakeServer  # noqa: E402
from bench.proxy_process import ProxyProcess, logged_calls, make_store  # noqa: E402
from bench.rss_sampler import RssSampler, per_window, window_peaks  # noqa: E402

LATENCY_S = 0.05
FAULT_RATE = 0.1
FAULT_TIMEOUT_S = 1.0  # the proxy's upstream timeout under --faults; a hang lasts 3x that


# -- the load ------------------------------------------------------------------------------------

@dataclass
class Side:
    """The calls of one path (through the proxy, or direct)."""

    outcomes: list[Outcome] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def latencies(self) -> list[float]:
        return [o.latency_s for o in self.outcomes if o.kind == "ok"]

    def count(self, kind: str) -> int:
        return sum(o.kind == kind for o in self.outcomes)


async def _client(url: str, index: int, stream: bool, deadline: float, side: Side, headers: dict,
                  read_timeout: float, stop: asyncio.Event, tls: ssl.SSLContext) -> None:
    timeout = httpx.Timeout(read_timeout, connect=10.0)
    async with httpx.AsyncClient(timeout=timeout, headers=headers, limits=httpx.Limits(max_connections=1),
                                 verify=tls) as client:
        i = index * 1_000_003
        while time.monotonic() < deadline and not stop.is_set():
            side.in_flight += 1
            side.max_in_flight = max(side.max_in_flight, side.in_flight)
            try:
                side.outcomes.append(await call(client, url, request_body(i, stream)))
            finally:
                side.in_flight -= 1
            i += 1


async def run_load(proxy_base: str, clients: int, seconds: float, *, direct_base: str | None = None,
                   direct_clients: int = 0, headers: dict | None = None, on_tick=None, direct_timeout: float = 60.0,
                   stop: asyncio.Event | None = None) -> tuple[Side, Side, float]:
    """`clients` clients on the proxy (odd ones stream) and `direct_clients` on `direct_base`, each calling
    in a loop until `seconds` have passed (or `stop` is set); every call started is finished (a direct call
    within `direct_timeout` s). `on_tick(elapsed)` runs every second. Returns (proxy side, direct side,
    seconds from start until the last call ended)."""
    proxy, direct = Side(), Side()
    stop = stop or asyncio.Event()
    tls = ssl.create_default_context()  # unused on http://, but each client would build its own (~20 ms)
    start = time.monotonic()
    deadline = start + seconds
    tasks = [asyncio.create_task(_client(proxy_base + "/chat/completions", i, i % 2 == 1, deadline, proxy,
                                         headers or {}, 60.0, stop, tls)) for i in range(clients)]
    if direct_base:
        tasks += [asyncio.create_task(_client(direct_base + "/chat/completions", clients + i, i % 2 == 1, deadline,
                                              direct, {}, direct_timeout, stop, tls)) for i in range(direct_clients)]
    pending = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=1.0)
        if on_tick is not None:
            on_tick(time.monotonic() - start)
    for task in tasks:
        task.result()  # a bug in the client code must not pass for a result
    return proxy, direct, time.monotonic() - start


# -- the bench -----------------------------------------------------------------------------------

def pct_ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def bench(clients: int, seconds: float, faults: bool, workdir: Path) -> dict:
    db = workdir / "store.duckdb"
    make_store(db)
    direct_clients = max(2, clients // 10)
    args = ["--concurrency", str(max(64, clients))]
    args += ["--max-attempts", "1", "--timeout", str(FAULT_TIMEOUT_S)] if faults else ["--timeout", "60"]
    fault_kw = {"fault_rate": FAULT_RATE, "fault_seed": 7, "hang_s": 3 * FAULT_TIMEOUT_S} if faults else {}
    ramp_s = min(10.0, seconds / 6)
    with FakeServer(LATENCY_S, workdir=workdir, **fault_kw) as upstream, \
            ProxyProcess(db, upstream.api_base, workdir=workdir, args=tuple(args)) as proxy:
        run_id = proxy.health()["run_id"]
        samples: list[tuple[float, float, float]] = []
        sampler = RssSampler(proxy)

        def tick(elapsed: float) -> None:
            if proxy.proc.poll() is None:
                samples.append((elapsed, *proxy.memory_mb()))

        print(f"proxy_load: {clients} clients ({clients // 2} streaming) for {seconds:.0f} s through the proxy "
              f"(pid {proxy.pid}), {direct_clients} direct clients beside them; upstream latency "
              f"{LATENCY_S * 1000:.0f} ms" + (f"; faults on {FAULT_RATE:.0%} of upstream calls" if faults else ""),
              flush=True)
        # under --faults a direct call gives up when the proxy would (a hang is not a slow success)
        sampler.start()
        side, direct, wall = asyncio.run(run_load(proxy.base_url, clients, seconds, direct_base=upstream.api_base,
                                                  direct_clients=direct_clients, on_tick=tick,
                                                  direct_timeout=FAULT_TIMEOUT_S if faults else 60.0))
        sampler.stop()
        alive = proxy.proc.poll() is None
        end_rss, end_hwm = proxy.memory_mb() if alive else (float("nan"), float("nan"))
        health = proxy.health() if alive else {}
        stats = upstream.stats()
        code = proxy.stop()
        output = proxy.output()
    rows = logged_calls(db, run_id)
    start = next((s for s in samples if s[0] >= ramp_s), samples[-1] if samples else (0.0, float("nan"), float("nan")))
    return {"clients": clients, "direct_clients": direct_clients, "seconds": seconds, "faults": faults,
            "proxy": side, "direct": direct, "wall": wall, "alive": alive, "exit_code": code, "output": output,
            "start": start, "end": (wall, end_rss, end_hwm), "samples": samples, "health": health,
            "rss": sampler.samples, "ramp_s": ramp_s,
            "upstream": stats, "rows": rows}


def expected_error(o: Outcome) -> bool:
    """An upstream fault passed on as it should be: a 502/504 OpenAI error, or an SSE error event."""
    return o.kind == "error" and (o.status in (502, 504) or (o.stream and o.status == 200))


def report(r: dict) -> str:
    proxy, direct = r["proxy"], r["direct"]
    requests = len(proxy.outcomes)
    shaped = proxy.count("error")
    errors = sum(not (o.kind == "ok" or r["faults"] and expected_error(o)) for o in proxy.outcomes)
    p_lat, d_lat = proxy.latencies(), direct.latencies()
    p50, p99 = pct_ms(p_lat, 50) - pct_ms(d_lat, 50), pct_ms(p_lat, 99) - pct_ms(d_lat, 99)
    rps = requests / r["wall"] if r["wall"] else 0.0
    rows = r["rows"]
    error_rows = sum(bool(row["error"]) for row in rows)
    statuses = Counter(o.status for o in proxy.outcomes if o.kind != "ok")
    details = Counter(o.detail.split(":")[0] for o in proxy.outcomes if o.kind == "bad")
    _, start_rss, start_hwm = r["start"]
    _, end_rss, end_hwm = r["end"]
    rss_seen = [s[1] for s in r["samples"]]
    print(f"proxy: {requests} requests in {r['wall']:.1f} s ({rps:.1f}/s): ok {proxy.count('ok')}, OpenAI-shaped "
          f"errors {shaped}, malformed or failed {proxy.count('bad')}; at most {proxy.max_in_flight} in flight")
    if statuses:
        print(f"  non-ok by HTTP status (0 = no response): {dict(sorted(statuses.items()))}")
    if details:
        print(f"  malformed or failed: {dict(details.most_common(5))}")
    print(f"direct: {len(direct.outcomes)} requests: ok {direct.count('ok')}, errors "
          f"{direct.count('error') + direct.count('bad')}; at most {direct.max_in_flight} in flight")
    print(f"latency to last byte, ms (ok calls): proxy p50 {pct_ms(p_lat, 50):.1f} p99 {pct_ms(p_lat, 99):.1f}; "
          f"direct p50 {pct_ms(d_lat, 50):.1f} p99 {pct_ms(d_lat, 99):.1f}; added p50 {p50:.1f} p99 {p99:.1f}")
    print(f"proxy memory, MiB: at {r['start'][0]:.0f} s VmRSS {start_rss:.1f} VmHWM {start_hwm:.1f}; at the end "
          f"({r['end'][0]:.0f} s) VmRSS {end_rss:.1f} VmHWM {end_hwm:.1f}; VmRSS seen "
          f"{min(rss_seen, default=float('nan')):.1f}-{max(rss_seen, default=float('nan')):.1f} over "
          f"{len(rss_seen)} samples")
    rss_start, rss_end = window_peaks(r["rss"], r["ramp_s"], r["wall"])
    peak_t, peak = max(r["rss"], key=lambda x: x[1], default=(float("nan"), float("nan")))
    width = max(r["ramp_s"], 1.0)
    print(f"proxy VmRSS sampled every 20 ms ({len(r['rss'])} samples): peak {rss_start:.1f} MiB in "
          f"{r['ramp_s']:.0f}-{r['ramp_s'] + width:.0f} s, {rss_end:.1f} MiB in the last {width:.0f} s; overall peak "
          f"{peak:.1f} MiB at {peak_t:.1f} s")
    print("proxy VmRSS peak per 5 s, MiB: " + ", ".join(f"{t:.0f}s {m:.0f}" for t, m in per_window(r["rss"], 5.0)))
    health = r["health"].get("calls", {})
    print(f"call log: {len(rows)} rows ({error_rows} with an error) for {requests} requests; /health at the end: "
          f"{health}; proxy {'up' if r['alive'] else 'DOWN'} at the end, exit code {r['exit_code']} after SIGTERM")
    if r["faults"]:
        print(f"upstream: {r['upstream']['calls']} calls (proxy and direct), faults injected "
              f"{r['upstream']['faults']}; failed proxy calls {shaped + proxy.count('bad')}, error rows {error_rows}")
    if "Traceback" in r["output"]:
        print("proxy output has a traceback:\n" + r["output"][-3000:])
    return (f"requests={requests} errors={errors} rps={rps:.1f} p50_added_ms={p50:.1f} p99_added_ms={p99:.1f} "
            f"rss_start_mb={rss_start:.1f} rss_end_mb={rss_end:.1f} log_rows={len(rows)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 s instead of 60")
    ap.add_argument("--faults", action="store_true", help=f"upstream faults on {FAULT_RATE:.0%}% of calls")
    ap.add_argument("--clients", type=int, default=200, help="concurrent clients on the proxy (1-2000)")
    ap.add_argument("--seconds", type=float, default=None, help="load duration (1-600 s)")
    args = ap.parse_args()
    seconds = args.seconds if args.seconds is not None else (20.0 if args.quick else 60.0)
    if not 1 <= args.clients <= 2000 or not 1 <= seconds <= 600:
        ap.error("--clients must be 1-2000 and --seconds 1-600")
    with tempfile.TemporaryDirectory(prefix="proxy-load-") as tmp:
        result = bench(args.clients, seconds, args.faults, Path(tmp))
    print(report(result))


if __name__ == "__main__":
    main()
