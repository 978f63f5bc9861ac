"""Benchmark the token prior and the `tfgrpo serve` proxy.

1. Prompt tokens the prior adds per call vs library size (10, 100, 1k, 10k experiences), for mode `all`
   (every live experience, cut at the token cap) and `topk` (k nearest to the question, same cap).
   Goal: added tokens stay at or under the cap whatever the library size.
2. Proxy overhead per call vs calling the same upstream directly, interleaved in the same run: an
   instant local upstream, the proxy as a real `tfgrpo serve` process with a 100-experience library
   (prior applied and every call logged). Goal: overhead < 5 ms p50.

    .venv/bin/python bench/prior_bench.py [--sizes 10,100,1000,10000] [--calls 300] [--cap 1024] [--k 8]

Experiences are synthetic (seeded) and embedded with the hashing embedder unless --embedder minilm.
The last line prints the figures."""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VERBS = ["check", "recompute", "write down", "compare", "convert", "round", "estimate", "verify", "label", "list"]
NOUNS = ["units", "the remainder", "each intermediate sum", "percentages", "the final answer", "fractions",
         "rates", "the number of items", "time spans", "negative values", "ratios", "totals", "averages"]
WHEN = ["a question mixes units", "several steps depend on each other", "the answer must be a whole number",
        "a discount is applied twice", "the text gives extra numbers", "rates change halfway", "money is split"]


def synthetic_lessons(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        text = (f"When {rng.choice(WHEN)}, {rng.choice(VERBS)} {rng.choice(NOUNS)} before you "
                f"{rng.choice(VERBS)} {rng.choice(NOUNS)}; case {len(out) + 1} of {rng.randint(2, 999)}.")
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def questions(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [f"A shop sells {rng.randint(2, 90)} {rng.choice(NOUNS)} when {rng.choice(WHEN)}. "
            f"How many are left after {rng.randint(1, 9)} days?" for _ in range(n)]


def build_store(path: Path, sizes: list[int], embedder_name: str):
    from experience_store import ExperienceStore, HashEmbedder, Op, OpKind

    embedder = HashEmbedder() if embedder_name == "hash" else None
    store = ExperienceStore(path, embedder=embedder)
    try:
        from experience_store.bulk import bulk_add  # set-wise load: seconds, not minutes
    except ImportError:
        bulk_add = None
    for size in sizes:
        lessons = synthetic_lessons(size, seed=size)
        if bulk_add is not None:
            bulk_add(store, f"bench-{size}", lessons, reason="prior bench")
            continue
        for i in range(0, size, 1000):
            store.apply(f"bench-{size}", [Op(kind=OpKind.ADD, text=t) for t in lessons[i:i + 1000]], dedup=False)
    return store


def added_tokens(store, size: int, mode: str, cap: int, k: int, qs: list[str]) -> dict:
    from tfgrpo.prior import Prior

    prior = Prior(store, f"bench-{size}", mode=mode, k=k, token_cap=cap)
    count = store.count_tokens
    added, injected, times = [], [], []
    for q in qs:
        base = [{"role": "system", "content": "You are a careful solver."}, {"role": "user", "content": q}]
        start = time.perf_counter()
        msgs, ids = prior.apply_with_ids(base)
        times.append(time.perf_counter() - start)
        added.append(sum(count(m["content"]) for m in msgs) - sum(count(m["content"]) for m in base))
        injected.append(len(ids))
    uncapped = sum(count(e.text) + 6 for e in store.experiences(f"bench-{size}")) if mode == "all" else None
    return {"size": size, "mode": mode, "max": max(added), "mean": statistics.mean(added),
            "injected": statistics.mean(injected), "apply_ms_p50": statistics.median(times[1:] or times) * 1000,
            "uncapped": uncapped}


def token_table(store, sizes: list[int], cap: int, k: int) -> list[dict]:
    qs = questions(40)
    rows = [added_tokens(store, s, mode, cap, k, qs) for s in sizes for mode in ("all", "topk")]
    print(f"{'size':>6} {'mode':>5} {'added max':>10} {'added mean':>11} {'injected':>9} {'apply p50 ms':>13} "
          f"{'all, no cap':>12}")
    for r in rows:
        print(f"{r['size']:>6} {r['mode']:>5} {r['max']:>10} {r['mean']:>11.1f} {r['injected']:>9.1f} "
              f"{r['apply_ms_p50']:>13.3f} {r['uncapped'] if r['uncapped'] is not None else '':>12}")
    return rows


# -- proxy overhead ---------------------------------------------------------------------------------
_ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "fake",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}).encode()


async def instant_upstream(scope, receive, send) -> None:
    """An OpenAI-compatible upstream that answers at once (raw ASGI: as little overhead as possible)."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": _ANSWER})


def serve_upstream(port: int) -> None:
    import uvicorn

    uvicorn.run(instant_upstream, host="127.0.0.1", port=port, log_level="error", access_log=False, lifespan="off")


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process exited early: {proc.args}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} not ready after {timeout:.0f}s")


def cpu_ms(pid: int) -> float:
    """CPU time (user + system) a process has used, in ms (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def measure(direct: str, proxied: str, calls: int, warmup: int = 30) -> dict:
    import httpx

    body = {"model": "fake", "messages": [{"role": "user", "content": questions(1)[0]}], "max_tokens": 8}
    d, p = [], []
    with httpx.Client(timeout=30) as client:
        for i in range(warmup + calls):
            for url, acc in ((direct, d), (proxied, p)):  # interleaved: same machine state for both
                start = time.perf_counter()
                resp = client.post(url, json=body)
                elapsed = time.perf_counter() - start
                resp.raise_for_status()
                if i >= warmup:
                    acc.append(elapsed * 1000)
            if i == 0:
                assert resp.headers.get("x-tfgrpo-injected"), "the proxy applied no prior"
    pd, pp = statistics.median(d), statistics.median(p)
    return {"direct_p50": pd, "proxy_p50": pp, "overhead_p50": pp - pd, "ratio": pp / pd,
            "paired_p50": statistics.median([b - a for a, b in zip(d, p)]), "calls": calls}


def proxy_overhead(db: Path, calls: int) -> dict:
    from tfgrpo.llm.local import free_port

    up_port, px_port = free_port(), free_port()
    up = subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(up_port)])
    px = None
    try:
        wait_ready(f"http://127.0.0.1:{up_port}/", up)
        px = subprocess.Popen([sys.executable, "-m", "tfgrpo.cli", "serve", "--library", "bench-100", "--model",
                               "openai/fake", "--api-base", f"http://127.0.0.1:{up_port}/v1", "--port", str(px_port),
                               "--db", str(db), "--max-attempts", "1"], stdout=subprocess.DEVNULL)
        wait_ready(f"http://127.0.0.1:{px_port}/health", px)
        before = cpu_ms(px.pid), cpu_ms(up.pid)
        out = measure(f"http://127.0.0.1:{up_port}/v1/chat/completions",
                      f"http://127.0.0.1:{px_port}/v1/chat/completions", calls)
        # CPU per call does not depend on how busy the machine is (wall-clock figures do).
        out["proxy_cpu_ms"] = (cpu_ms(px.pid) - before[0]) / (calls + 30)
        out["upstream_cpu_ms"] = (cpu_ms(up.pid) - before[1]) / (2 * (calls + 30))
        return out
    finally:
        for proc in (px, up):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)


def logged_calls(db: Path) -> int:
    from experience_store import ExperienceStore

    with ExperienceStore(db, read_only=True) as store:
        return len(store.calls(stage="proxy"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,100,1000,10000")
    ap.add_argument("--cap", type=int, default=1024)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--embedder", choices=["hash", "minilm"], default="hash")
    ap.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return
    sizes = sorted({int(s) for s in args.sizes.split(",")} | {100})
    os.environ.setdefault("TFGRPO_HOME", tempfile.mkdtemp(prefix="tfgrpo-bench-home-"))
    db = Path(tempfile.mkdtemp(prefix="tfgrpo-bench-")) / "bench.duckdb"
    start = time.perf_counter()
    store = build_store(db, sizes, args.embedder)
    print(f"built {len(sizes)} libraries ({sum(sizes)} experiences, {args.embedder} embedder) in "
          f"{time.perf_counter() - start:.1f}s; token counter: cl100k_base")
    rows = token_table(store, sizes, args.cap, args.k)
    store.close()
    o = proxy_overhead(db, args.calls)
    logged = logged_calls(db)
    print(f"proxy: direct p50 {o['direct_p50']:.2f} ms, through proxy p50 {o['proxy_p50']:.2f} ms, paired "
          f"difference p50 {o['paired_p50']:.2f} ms over {o['calls']} calls; {logged} calls in the call log; "
          f"CPU per call: proxy {o['proxy_cpu_ms']:.2f} ms (call log included), upstream "
          f"{o['upstream_cpu_ms']:.2f} ms; machine load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    worst = max(r["max"] for r in rows)
    tops = " ".join(f"{r['size']}:{r['max']}" for r in rows if r["mode"] == "topk")
    alls = " ".join(f"{r['size']}:{r['max']}" for r in rows if r["mode"] == "all")
    print(f"RESULT added tokens max (cap {args.cap}) all[{alls}] topk(k={args.k})[{tops}] -> "
          f"{'<= cap' if worst <= args.cap else 'OVER CAP'}; proxy overhead p50 {o['overhead_p50']:.2f} ms "
          f"(ratio {o['ratio']:.2f}x vs direct {o['direct_p50']:.2f} ms) -> "
          f"{'< 5 ms' if o['overhead_p50'] < 5 else 'over 5 ms'}")


if __name__ == "__main__":
    main()
