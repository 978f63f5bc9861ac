"""Generated tokens/s through our gateway (and rollout stage) vs the raw llama.cpp server alone, same
prompts, interleaved in one run. Last line: `gateway_tok_s=<x> raw_tok_s=<y> ratio=<x/y> model=<m>`.

    python bench/local_throughput.py [--model local] [--prompts 4] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from tfgrpo.llm.backends import OpenAICompatBackend
from tfgrpo.llm.fetch import resolve_gguf
from tfgrpo.llm.gateway import Gateway
from tfgrpo.llm.local import LocalServer
from tfgrpo.llm.call_log import MemoryCallLog

PROMPTS = [
    "A farmer has 17 sheep and buys 5 more each week for 6 weeks. How many sheep does he have?",
    "Explain in three sentences why the sky is blue.",
    "Write a Python function that returns the n-th Fibonacci number.",
    "A train travels 120 km in 1.5 hours. What is its average speed in km/h?",
    "List four prime numbers greater than 50 and explain how you checked them.",
    "Tom is twice as old as Ann. In 5 years their ages sum to 40. How old is Ann?",
]


def raw_call(base: str, model: str, prompt: str, max_tokens: int, seed: int) -> tuple[int, float]:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0.0, "top_p": 1.0,
            "max_tokens": max_tokens, "seed": seed}
    t = time.perf_counter()
    r = httpx.post(f"{base}/chat/completions", json=body, timeout=600).json()
    return r["usage"]["completion_tokens"], time.perf_counter() - t


async def gw_call(gw: Gateway, prompt: str, max_tokens: int, seed: int) -> tuple[int, float]:
    t = time.perf_counter()
    [c] = await gw.chat([{"role": "user", "content": prompt}], temperature=0.0, max_tokens=max_tokens, seed=seed,
                        stage="rollout")
    return c.completion_tokens, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="local")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    with LocalServer(resolve_gguf(args.model), alias=args.model) as srv:
        gw = Gateway(OpenAICompatBackend(args.model, srv.api_base), call_log=MemoryCallLog(), is_local=True)
        raw_call(srv.api_base, args.model, "warm up", 8, 0)
        totals = {"raw": [0, 0.0], "gateway": [0, 0.0]}
        for i, prompt in enumerate(PROMPTS[: args.prompts]):
            order = ("raw", "gateway") if i % 2 == 0 else ("gateway", "raw")
            for kind in order:
                if kind == "raw":
                    n, dt = raw_call(srv.api_base, args.model, prompt, args.max_tokens, i)
                else:
                    n, dt = asyncio.run(gw_call(gw, prompt, args.max_tokens, i))
                totals[kind][0] += n
                totals[kind][1] += dt
        raw = totals["raw"][0] / totals["raw"][1]
        gwt = totals["gateway"][0] / totals["gateway"][1]
        print(f"raw: {totals['raw'][0]} tokens in {totals['raw'][1]:.1f}s; gateway: {totals['gateway'][0]} tokens "
              f"in {totals['gateway'][1]:.1f}s")
        print(f"gateway_tok_s={gwt:.1f} raw_tok_s={raw:.1f} ratio={gwt / raw:.3f} model={args.model}")


if __name__ == "__main__":
    main()
