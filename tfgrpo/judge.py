"""The semantic group advantage: summarize each selected rollout, then extract from each group at most K
experience proposals that explain what separated winners from losers."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from tfgrpo.errors import BudgetExceeded, LLMError
from tfgrpo.learner_parse import InvalidLearnerOutput, parse_proposals
from tfgrpo.llm.types import ChatModel
from tfgrpo.memo import Memo
from tfgrpo.prompts import render

SUMMARY_WORDS = 80
Reject = Callable[[str, str, str], None]  # (stage, reason, raw)


def rollout_text(row: dict[str, Any], max_chars: int = 3000) -> str:
    """The text of a rollout as the learner sees it (agent trajectories are rendered by their runner)."""
    text = row.get("extra", {}).get("trajectory_text") or row.get("completion") or ""
    if row.get("error"):
        text = f"(the call failed: {row['error']})"
    return text if len(text) <= max_chars else text[: max_chars // 2] + "\n...\n" + text[-max_chars // 2:]


async def summarize(model: ChatModel, row: dict[str, Any], *, reference: str | None, memo: Memo, key: str,
                    temperature: float, seed: int) -> str:
    """One summary per rollout; memoized so resume never repeats a finished call."""
    cached = memo.get(key)
    if cached is not None:
        return cached
    result = row.get("reward_reason", "")
    prompt = render("summarize", question=row["question"], reference=reference, reward=row["reward"],
                    result=result, attempt=rollout_text(row), max_words=SUMMARY_WORDS)
    try:
        [c] = await model.chat([{"role": "user", "content": prompt}], temperature=temperature,
                               max_tokens=SUMMARY_WORDS * 2, stage="summarize", seed=seed,
                               meta={"rollout_id": row["id"]})
        text = c.text.strip() or rollout_text(row, 600)
    except BudgetExceeded:
        raise
    except LLMError as exc:  # fall back to the raw attempt; the failure is in the call log
        if exc.fatal:
            raise
        text = f"(no summary: {exc}) " + rollout_text(row, 600)
    memo.put(key, text)
    return text


async def extract(model: ChatModel, question: str, rows: list[dict], summaries: dict[str, str], kind: str, *,
                  reference: str | None, solution: str | None, library: list[str], k: int, max_words: int,
                  retries: int, temperature: float, memo: Memo, key: str, seed: int,
                  reject: Reject) -> dict[str, Any]:
    """Proposals for one group: {"proposals": [...], "call_id": str|None, "error": str|None}."""
    cached = memo.get(key)
    if cached is not None:
        return cached
    attempts = [{"reward": r["reward"], "summary": summaries[r["id"]]} for r in rows]
    attempts.sort(key=lambda a: -a["reward"])
    template = "extract_all_wrong" if kind == "all_wrong" else "extract"
    prompt = render(template, question=question, reference=reference, solution=solution, attempts=attempts,
                    library=library, k=k, max_words=max_words)
    out: dict[str, Any] = {"proposals": [], "call_id": None, "error": None}
    for attempt in range(retries + 1):
        try:
            [c] = await model.chat([{"role": "user", "content": prompt}], temperature=temperature,
                                   max_tokens=max(256, k * max_words * 3), stage="extract", seed=seed + attempt,
                                   meta={"group": key})
        except BudgetExceeded:
            raise
        except LLMError as exc:
            if exc.fatal:
                raise
            out["error"] = f"learner call failed: {exc}"
            reject("extract", out["error"], "")
            break
        try:
            out.update(proposals=parse_proposals(c.text, c.finish_reason, k=k, max_words=max_words,
                                                   question=question),
                       call_id=c.call_id, error=None)
            break
        except InvalidLearnerOutput as exc:
            out["error"] = str(exc)
            reject("extract", f"attempt {attempt + 1}: {exc}", c.text)
    memo.put(key, out)
    return out


async def gather_limited(coros, limit: int = 64):
    sem = asyncio.Semaphore(limit)

    async def run(c):
        async with sem:
            return await c

    return await asyncio.gather(*[run(c) for c in coros])
