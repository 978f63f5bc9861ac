"""The semantic group advantage: summarize each selected rollout, then extract from each group at most K
experience proposals that explain what separated winners from losers."""

from __future__ import annotations

from typing import Any

from tfgrpo.errors import LLMError
from tfgrpo.loop.learner_call import Reject, ask_learner
from tfgrpo.loop.learner_parse import Extraction, parse_group
from tfgrpo_common.chat import ChatModel
from tfgrpo.loop.memo import HeldPuts, Memo
from tfgrpo.loop.prompts import render

SUMMARY_WORDS = 80
SUMMARY_MAX_TOKENS = 320  # room for 80 words of any tokenizer; a cut summary is marked as such


def rollout_text(row: dict[str, Any], max_chars: int = 3000) -> str:
    """The text of a rollout as the learner sees it (agent trajectories are rendered by their runner)."""
    text = row.get("extra", {}).get("trajectory_text") or row.get("completion") or ""
    if row.get("error"):
        text = f"(the call failed: {row['error']})"
    return text if len(text) <= max_chars else text[: max_chars // 2] + "\n...\n" + text[-max_chars // 2:]


async def summarize(model: ChatModel, row: dict[str, Any], *, reference: str | None, memo: Memo | HeldPuts,
                    key: str, temperature: float, seed: int) -> str:
    """One summary per rollout; memoized so resume never repeats a finished call."""
    cached = memo.get(key)
    if cached is not None:
        return cached
    result = row.get("reward_reason", "")
    prompt = render("summarize", question=row["question"], reference=reference, reward=row["reward"],
                    result=result, attempt=rollout_text(row), max_words=SUMMARY_WORDS)
    try:
        [c] = await model.chat([{"role": "user", "content": prompt}], temperature=temperature,
                               max_tokens=SUMMARY_MAX_TOKENS, stage="summarize", seed=seed,
                               meta={"rollout_id": row["id"]})
        text = c.text.strip() or rollout_text(row, 600)
        if c.finish_reason == "length":  # say so rather than pass a cut sentence off as the whole summary
            text += " (summary cut off)"
    except LLMError as exc:  # fall back to the raw attempt; the failure is in the call log
        if exc.fatal:
            raise
        text = f"(no summary: {exc}) " + rollout_text(row, 600)
    memo.put(key, text)
    return text


async def extract(model: ChatModel, question: str, rows: list[dict], summaries: dict[str, str], kind: str, *,
                  reference: str | None, solution: str | None, library: list[dict], k: int, max_words: int,
                  retries: int, temperature: float, max_tokens: int, memo: Memo | HeldPuts, key: str,
                  seed: int, reject: Reject) -> dict[str, Any]:
    """Proposals for one group: {"proposals": [...], "revisions": [[id, text], ...], "pattern": str,
    "call_id": str|None, "error": str|None}. `library`: the lessons as {"id", "text"}, which the learner may
    revise by id. Each attempt is shown as it is, or as its summary where one was made (the group did not fit)."""
    cached = memo.get(key)
    if cached is not None:
        return cached
    attempts = [{"reward": r["reward"], "summary": r["id"] in summaries,
                 "text": summaries.get(r["id"]) or rollout_text(r, 4000)} for r in rows]
    attempts.sort(key=lambda a: -a["reward"])
    live = {int(e["id"]) for e in library}
    template = "extract_all_wrong" if kind == "all_wrong" else "extract"
    prompt = render(template, question=question, reference=reference, solution=solution, attempts=attempts,
                    library=library, k=k, max_words=max_words)
    ans = await ask_learner(
        model, prompt, lambda text, finish: parse_group(text, finish, k=k, max_words=max_words, question=question,
                                                        live_ids=live),
        stage="extract", retries=retries, temperature=temperature, max_tokens=max_tokens,
        seed=seed, reject=reject, meta={"group": key})
    got = ans.value if ans.value is not None else Extraction()
    out = {"proposals": got.lessons, "revisions": [list(r) for r in got.revisions], "pattern": got.pattern,
           "call_id": ans.call_id, "error": ans.error}
    memo.put(key, out)
    return out
