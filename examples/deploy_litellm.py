"""litellm-shaped calls with a learned experience library: `completion` / `acompletion` take
litellm's arguments plus `library=` (and version, mode, k, token_cap, db).

    python examples/deploy_litellm.py                            # offline: embedded SmolLM2, demo library
    python examples/deploy_litellm.py --library gsm8k --model openai/gpt-4.1-mini   # hosted (needs a key)

Without `--db`, a small demo library is written to a temporary store so the example runs anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from tfgrpo.api import acompletion, completion, use_library
from tfgrpo.llm.call_log import MemoryCallLog

QUESTION = [{"role": "user", "content": "A train travels 60 km in 1.5 hours. What is its speed in km/h?"}]


def demo_library(db: Path, name: str) -> None:
    from experience_store import ExperienceStore, HashEmbedder, Op, OpKind

    with ExperienceStore(db, embedder=HashEmbedder()) as store:
        store.apply(name, [Op(kind=OpKind.ADD, text=t) for t in (
            "Speed is distance divided by time; keep the units in each step.",
            "End with the final number inside \\boxed{}.")])


async def async_calls(model: str, library: str, db: Path) -> None:
    resp = await acompletion(model=model, messages=QUESTION, library=library, db=db, max_tokens=48, temperature=0)
    print("acompletion:", resp.choices[0].message.content.strip()[:200])
    # Many calls: open the library once with `use_library` (here: the 4 experiences nearest the question).
    with use_library(library, db=db, mode="topk", k=4) as lib:
        replies = await asyncio.gather(*[lib.acompletion(model, QUESTION, max_tokens=32, temperature=0.7, seed=s)
                                         for s in range(2)])
    print("topk, concurrent:", [r.choices[0].message.content.strip()[:60] for r in replies])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", default="demo")
    ap.add_argument("--model", default="local:smollm2", help="local:* (embedded) or any litellm model name")
    ap.add_argument("--db", type=Path, help="store file (default: a temporary demo store)")
    args = ap.parse_args()
    db = args.db or Path(tempfile.mkdtemp()) / "demo.duckdb"
    if args.db is None:
        demo_library(db, args.library)

    log = MemoryCallLog()  # optional: record each call with the injected experience ids
    resp = completion(model=args.model, messages=QUESTION, library=args.library, db=db, call_log=log,
                      max_tokens=48, temperature=0)
    print("completion :", resp.choices[0].message.content.strip()[:200])
    print("  injected experiences:", log.records[0].meta["injected_ids"])

    asyncio.run(async_calls(args.model, args.library, db))


if __name__ == "__main__":
    main()
