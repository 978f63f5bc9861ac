"""Resumable evaluation of one arm: one JSON line per item, appended and flushed as soon as the item is
scored; a rerun skips the items already in the file, except those whose call failed (a timeout or an
unreachable model is the machine's fault, not the model's answer): those are evaluated again and the new
line replaces the failed one. Each item keeps its index in the arm's item list, so
its seed (and at temperature 0 its result) does not depend on which items were left to do."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from tfgrpo.evaluation.runner import run_eval
from tfgrpo_common.event_loop import gather_or_cancel


class ItemFile:
    """`<arm>.jsonl`: the finished items of an arm. A line cut short by a kill is dropped on open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        if path.is_file():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        keep = data[: data.rfind(b"\n") + 1]  # a partial last line (killed mid-write) is cut off
        if keep != data:
            self.path.write_bytes(keep)
        for line in keep.decode("utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                old = self.records.get(rec["id"])
                if old is None or old.get("error"):  # a later line replaces a failed item, nothing else
                    self.records[rec["id"]] = rec

    def failed(self) -> set[str]:
        """Ids of the items whose record is a failed call (evaluated again by a rerun)."""
        return {i for i, rec in self.records.items() if rec.get("error")}

    def append(self, rec: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.records[rec["id"]] = rec


def read_items(path: Path) -> list[dict[str, Any]]:
    """The records of an item file, in index order (one per id)."""
    return sorted(ItemFile(path).records.values(), key=lambda r: r["index"]) if path.is_file() else []


class UsageModel:
    """A ChatModel wrapper that keeps each item's prompt and completion tokens (run_eval sums them)."""

    def __init__(self, inner) -> None:
        self.inner, self.name = inner, getattr(inner, "name", "?")
        self.usage: dict[str, list[int]] = {}

    async def chat(self, messages, **kw):
        comps = await self.inner.chat(messages, **kw)
        u = self.usage.setdefault(str((kw.get("meta") or {}).get("item")), [0, 0])
        for c in comps:
            u[0] += c.prompt_tokens
            u[1] += c.completion_tokens
        return comps


def loop_period(text: str, repeats: int = 4, longest: int = 400) -> int | None:
    """The length of the unit that the text's end repeats `repeats` times in a row (a decoding loop), else
    None: the answer ran out of tokens while still working."""
    text = text.rstrip()
    for p in range(1, longest + 1):
        if len(text) >= repeats * p and text[-repeats * p:] == text[-p:] * repeats:
            return p
    return None


def item_record(it, index: int, usage: list[int], wall_s: float) -> dict[str, Any]:
    rec = {"id": it.id, "index": index, "score": sum(it.scores) / len(it.scores) if it.scores else 0.0,
           "scores": it.scores, "extracted": it.extracted, "finish_reasons": it.finish_reasons,
           "format_ok": it.format_ok, "prompt_tokens": usage[0], "completion_tokens": usage[1],
           "calls": len(it.scores), "wall_s": round(wall_s, 3), "error": it.error}
    cut = [(text or "") for text, f in zip(it.completions, it.finish_reasons) if f == "length"]
    if cut:  # why an answer ran to the limit: a loop (its period) or a long derivation (null), and its end
        rec["truncated"] = [{"loop_period": loop_period(t), "tail": t[-200:]} for t in cut]
    return rec


class Progress:
    """Items/min and effective tokens/s (completion tokens / wall) of this session, printed per item."""

    def __init__(self, label: str, total: int, done: int, every: int = 1) -> None:
        self.label, self.total, self.done, self.every = label, total, done, every
        self.start, self.new, self.tokens = time.perf_counter(), 0, 0

    def item(self, rec: dict[str, Any]) -> None:
        self.done, self.new, self.tokens = self.done + 1, self.new + 1, self.tokens + rec["completion_tokens"]
        if self.new % self.every == 0 or self.done == self.total:
            wall = max(time.perf_counter() - self.start, 1e-9)
            trunc = " truncated" if "length" in rec["finish_reasons"] else ""
            print(f"  [{self.label}] {self.done}/{self.total} {rec['id']} score={rec['score']:.2f}{trunc} | "
                  f"{self.tokens / wall:.1f} tok/s, {self.new / wall * 60:.2f} items/min", flush=True)


async def _run_pool(model: UsageModel, task, todo: list[tuple[int, Any]], out: ItemFile, *, seed: int,
                    max_tokens: int, apply: Callable | None, concurrency: int, deadline: float | None,
                    progress: Progress) -> bool:
    """Evaluate `todo` ((index, example) pairs), `concurrency` items in flight: a finished item's slot takes
    the next item at once (no waiting for the slowest of a chunk). False when the deadline stopped it; an
    item started before the deadline is finished and kept."""
    sem = asyncio.Semaphore(concurrency)
    mark, stopped = [time.perf_counter()], [False]

    def done(it, index: int) -> None:
        now = time.perf_counter()  # wall shared out so that the items' walls add up to the eval wall
        rec = item_record(it, index, model.usage.pop(it.id, [0, 0]), now - mark[0])
        mark[0] = now
        out.append(rec)
        progress.item(rec)

    async def one(index: int, ex) -> None:
        async with sem:
            if stopped[0] or (deadline is not None and time.monotonic() >= deadline):
                stopped[0] = True
                return
            await run_eval(model, task, [ex], k=1, seed=seed, temperature=0.0, max_tokens=max_tokens,
                           apply_prior=apply, on_item=lambda it: done(it, index), indices=[index])

    try:
        await gather_or_cancel(*(one(i, ex) for i, ex in todo))
    finally:  # the HTTP sessions belong to this event loop: close them with it (no "Unclosed client session")
        close = getattr(model.inner, "aclose", None)
        if close is not None:
            await close()
    return not stopped[0]


def evaluate_arm(model, task, examples: list, path: Path, *, label: str, seed: int, max_tokens: int,
                 apply: Callable | None, concurrency: int = 1, deadline: float | None = None) -> bool:
    """Evaluate the items of `examples` not yet in `path`; True when the arm is complete."""
    out = ItemFile(path)
    failed = out.failed()
    todo = [(i, ex) for i, ex in enumerate(examples) if ex.id not in out.records or ex.id in failed]
    done = len(examples) - len(todo)
    again = sum(1 for _, ex in todo if ex.id in failed)
    retry = f" ({again} whose call failed, again)" if again else ""
    print(f"[{label}] {done}/{len(examples)} items already done, {len(todo)} to go{retry}", flush=True)
    complete = not todo or asyncio.run(_run_pool(
        UsageModel(model), task, todo, out, seed=seed, max_tokens=max_tokens, apply=apply,
        concurrency=max(1, concurrency), deadline=deadline, progress=Progress(label, len(examples), done)))
    print(summary_line(label, list(out.records.values()), len(examples)), flush=True)
    return complete


def summary_line(label: str, recs: list[dict[str, Any]], total: int) -> str:
    """The arm's progress: items done, mean score, truncation rate, eval wall and tokens/s so far."""
    if not recs:
        return f"[{label}] 0/{total} items"
    finishes = [f for r in recs for f in r["finish_reasons"]]
    wall = sum(r["wall_s"] for r in recs)
    toks = sum(r["completion_tokens"] for r in recs)
    cut = [t for r in recs for t in r.get("truncated", [])]  # items written before this field: not counted
    loops = f" ({sum(t['loop_period'] is not None for t in cut)} of {len(cut)} with text: loops)" if cut else ""
    return (f"[{label}] {len(recs)}/{total} items: mean {sum(r['score'] for r in recs) / len(recs):.3f}, "
            f"truncated {sum(f == 'length' for f in finishes) / max(1, len(finishes)):.1%}{loops}, "
            f"eval {wall / 60:.1f} min, {toks / wall if wall else 0:.1f} tok/s")
