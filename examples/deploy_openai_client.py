"""Use a learned experience library from an existing OpenAI client, two ways.

1. Through the proxy (`tfgrpo serve`): the client only changes its `base_url`.
2. In-process: `use_library(...).wrap(client)` applies the prior before each request.

    python examples/deploy_openai_client.py                      # offline: embedded SmolLM2, demo library
    python examples/deploy_openai_client.py --library gsm8k --model local

Without `--db`, a small demo library is written to a temporary store so the example runs anywhere.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from openai import OpenAI

from tfgrpo.api import use_library
from tfgrpo.config import ModelConfig
from tfgrpo.llm.factory import ModelPool
from tfgrpo.serve.config import ProxyConfig
from tfgrpo.serve.server import ProxyRuntime

QUESTION = [{"role": "user", "content": "A pen costs 3 dollars. How much do 4 pens cost?"}]


def demo_library(db: Path, name: str) -> None:
    from experience_store import ExperienceStore, HashEmbedder, Op, OpKind

    with ExperienceStore(db, embedder=HashEmbedder()) as store:
        store.apply(name, [Op(kind=OpKind.ADD, text=t) for t in (
            "Multiply the unit price by the quantity; write the product before the answer.",
            "End with the final number inside \\boxed{}.")])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", default="demo")
    ap.add_argument("--model", default="local:smollm2", help="local | local:qwen0.5b | local:smollm2")
    ap.add_argument("--db", type=Path, help="store file (default: a temporary demo store)")
    args = ap.parse_args()
    db = args.db or Path(tempfile.mkdtemp()) / "demo.duckdb"
    if args.db is None:
        demo_library(db, args.library)

    with ModelPool() as pool:
        # Any OpenAI-compatible endpoint works as the upstream (OpenAI, vLLM, Ollama, llama.cpp).
        upstream = pool.server_for(ModelConfig(model=args.model)).api_base

        # 1. The proxy, exactly what `tfgrpo serve --library demo --model openai/<m> --api-base <url>` runs.
        proxy_cfg = ProxyConfig(library=args.library, port=0)
        model = ModelConfig(model=f"openai/{args.model}", api_base=upstream)
        with ProxyRuntime(proxy_cfg, model, db=db).start() as proxy:
            client = OpenAI(base_url=proxy.base_url, api_key="unused-on-loopback")
            raw = client.chat.completions.with_raw_response.create(model=args.model, messages=QUESTION,
                                                                   max_tokens=48, temperature=0)
            print("via proxy :", raw.parse().choices[0].message.content.strip()[:200])
            print("  injected experiences:", raw.headers["x-tfgrpo-injected"])

        # 2. In-process: wrap the client you already have.
        with use_library(args.library, db=db) as lib:
            client = lib.wrap(OpenAI(base_url=upstream, api_key="unused"))
            resp = client.chat.completions.create(model=args.model, messages=QUESTION, max_tokens=48, temperature=0)
            print("via wrap  :", resp.choices[0].message.content.strip()[:200])
            print("  injected experiences:", lib.last_ids)


if __name__ == "__main__":
    main()
