"""Generated tokens/s of the embedded model for N concurrent GSM8K-like requests (a group of G rollouts,
the items of an eval), side by side in one run on the same prompts, rounds interleaved:

* llama-server (llama.cpp's own server, N parallel slots) through our gateway, and raw HTTP to it;
* llama_cpp.server (llama-cpp-python, one request at a time) through our gateway.

Effective tokens/s = completion tokens of the N requests / wall time until the last one is done.
Last line: `gateway_tok_s=<x> raw_tok_s=<y> ratio=<x/y> model=<m> engine=<name> slots=<n>
fallback_tok_s=<z> speedup=<x/z>` (gateway and raw on `engine`; fallback = llama_cpp.server via the
gateway; without a llama-server binary, engine is llama_cpp.server and the fallback fields are absent).

    python bench/local_throughput.py [--model local] [--prompts 4] [--max-tokens 256] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from contextlib import ExitStack
from unittest import mock

import httpx

from tfgrpo.llm.backends import OpenAICompatBackend
from tfgrpo.llm.call_log import MemoryCallLog
from tfgrpo.llm.fetch import resolve_gguf
from tfgrpo.llm.gateway import Gateway
from tfgrpo.llm.llama_server import LLAMA_CPP_PYTHON, LLAMA_SERVER
from tfgrpo.llm.local import LocalServer

INSTRUCTION = "Solve the problem step by step, then give the final answer as \\boxed{n}.\n\n"
PROBLEMS = [
    ("Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes muffins with four. She sells the "
     "rest at $2 per egg. How much does she make every day?"),
    "A farmer has 17 sheep and buys 5 more each week for 6 weeks, then sells 9. How many sheep does he have?",
    "A train travels 120 km in 1.5 hours, then 80 km in 0.5 hours. What is its average speed in km/h?",
    "Tom is twice as old as Ann. In 5 years their ages sum to 40. How old is Ann now?",
    "A shop sells pens at $3 each or 4 for $10. How much do 14 pens cost at the cheapest?",
    ("Mia reads 12 pages on Monday and each day reads 3 more pages than the day before. How many pages has she "
     "read after Friday?"),
    "A tank holds 240 liters. One pipe fills it in 6 hours, another in 4 hours. How long do both take together?",
    "Sam saves $15 a week. His bike costs $210 and his aunt gives him $45. How many weeks must he save?",
    "A rectangle is 3 times as long as it is wide and its perimeter is 64 cm. What is its area?",
    "Lena buys 3 notebooks at $4.50 and 2 pens at $1.25 and pays with a $20 bill. How much change does she get?",
    "A baker makes 144 cookies and packs them in boxes of 8. He sells each box for $6. How much does he earn?",
    "A car uses 7 liters per 100 km. Fuel costs $1.60 a liter. What does a 350 km trip cost?",
]


def prompts_for(round_no: int, n: int) -> list[str]:
    return [INSTRUCTION + PROBLEMS[(round_no * n + i) % len(PROBLEMS)] for i in range(n)]


async def raw_batch(base: str, model: str, prompts: list[str], max_tokens: int) -> int:
    async with httpx.AsyncClient(timeout=1200) as client:
        async def one(i: int, prompt: str) -> int:
            body = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0.0,
                    "top_p": 1.0, "max_tokens": max_tokens, "seed": i}
            r = await client.post(f"{base}/chat/completions", json=body)
            r.raise_for_status()
            return r.json()["usage"]["completion_tokens"]

        return sum(await asyncio.gather(*[one(i, p) for i, p in enumerate(prompts)]))


async def gw_batch(gw: Gateway, prompts: list[str], max_tokens: int) -> int:
    parts = await asyncio.gather(*[gw.chat([{"role": "user", "content": p}], temperature=0.0, max_tokens=max_tokens,
                                           seed=i, stage="rollout") for i, p in enumerate(prompts)])
    return sum(c.completion_tokens for [c] in parts)


def timed(coro) -> tuple[int, float]:
    t = time.perf_counter()
    n = asyncio.run(coro)
    return n, time.perf_counter() - t


def start_server(gguf, model: str, slots: int | None, fallback: bool) -> LocalServer:
    """The preferred engine, or (fallback) llama_cpp.server with the llama-server binary turned off."""
    with mock.patch.dict(os.environ, {"TFGRPO_LLAMA_SERVER": "off"} if fallback else {}):
        return LocalServer(gguf, alias=model, slots=slots, startup_timeout_s=600).start()


def gateway_for(srv: LocalServer, model: str) -> Gateway:
    # the same in-flight limit as ModelPool.gateway gives an embedded model: its slots, at least 2
    return Gateway(OpenAICompatBackend(model, srv.api_base), call_log=MemoryCallLog(), is_local=True,
                   concurrency=max(2, srv.slots), timeout_s=1200)


def run_rounds(servers: dict[str, LocalServer], model: str, args) -> dict[str, list]:
    kinds = [k for k in ("gateway", "raw", "fallback") if k != "fallback" or "fallback" in servers]
    gws = {k: gateway_for(servers[k if k == "fallback" else "main"], model) for k in kinds if k != "raw"}
    totals = {k: [0, 0.0] for k in kinds}
    for r in range(args.rounds):
        prompts = prompts_for(r, args.prompts)
        order = kinds[r % len(kinds):] + kinds[: r % len(kinds)]
        for kind in order:
            if kind == "raw":
                n, dt = timed(raw_batch(servers["main"].api_base, model, prompts, args.max_tokens))
            else:
                n, dt = timed(gw_batch(gws[kind], prompts, args.max_tokens))
            totals[kind][0] += n
            totals[kind][1] += dt
            print(f"round {r + 1} {kind:8s}: {n} tokens in {dt:.1f}s = {n / dt:.1f} tok/s", flush=True)
    return totals


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="local")
    ap.add_argument("--prompts", type=int, default=4, help="concurrent requests per batch")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--slots", type=int, default=None, help="llama-server slots (default $TFGRPO_LLAMA_SLOTS or 4)")
    args = ap.parse_args()
    gguf = resolve_gguf(args.model)
    with ExitStack() as stack:
        servers = {"main": stack.enter_context(start_server(gguf, args.model, args.slots, fallback=False))}
        main_srv = servers["main"]
        if main_srv.engine == LLAMA_SERVER:
            servers["fallback"] = stack.enter_context(start_server(gguf, args.model, 1, fallback=True))
        print(f"engine={main_srv.engine} slots={main_srv.slots} threads={main_srv.threads} model={args.model} "
              f"requests={args.prompts} max_tokens={args.max_tokens} rounds={args.rounds} "
              f"loadavg={os.getloadavg()[0]:.2f}", flush=True)
        for srv in servers.values():  # load the weights into the page cache, warm the threads
            timed(raw_batch(srv.api_base, args.model, ["warm up"], 8))
        totals = run_rounds(servers, args.model, args)
    print(f"loadavg at the end {os.getloadavg()[0]:.2f} (other work on the cores slows llama.cpp's threads a lot)")
    rate = {k: n / dt for k, (n, dt) in totals.items()}
    for kind, (n, dt) in totals.items():
        engine = LLAMA_CPP_PYTHON if kind == "fallback" else main_srv.engine
        print(f"{kind}: {engine}, {n} tokens in {dt:.1f}s = {rate[kind]:.1f} tok/s")
    line = (f"gateway_tok_s={rate['gateway']:.1f} raw_tok_s={rate['raw']:.1f} "
            f"ratio={rate['gateway'] / rate['raw']:.3f} model={args.model} engine={main_srv.engine} "
            f"slots={main_srv.slots}")
    if "fallback" in rate:
        line += f" fallback_tok_s={rate['fallback']:.1f} speedup={rate['gateway'] / rate['fallback']:.2f}"
    print(line)


if __name__ == "__main__":
    main()
