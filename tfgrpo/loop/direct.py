"""The "directly generated experiences" ablation: the learner writes lessons from the training questions
alone — no rollouts, no rewards, no group comparison — and they are stored as one version."""

from __future__ import annotations

from experience_store import Op, OpKind, Provenance
from tfgrpo.loop.learner_call import ask_learner
from tfgrpo.loop.learner_parse import parse_proposals
from tfgrpo_common.chat import ChatModel
from tfgrpo.loop.prompts import render


async def direct_experiences(model: ChatModel, questions: list[str], *, k: int = 6, max_words: int = 32,
                             retries: int = 2, seed: int = 0) -> tuple[list[str], str | None]:
    """Return (lessons, call_id); an output that never validates returns ([], None)."""
    prompt = render("direct", questions=questions, k=k, max_words=max_words)
    ans = await ask_learner(model, prompt, lambda text, finish: parse_proposals(text, finish, k=k, max_words=max_words),
                            stage="direct", retries=retries, temperature=0.3, max_tokens=k * max_words * 3, seed=seed)
    return (ans.value, ans.call_id) if ans.value is not None else ([], None)


def store_direct(store, library: str, lessons: list[str], run_id: str | None, call_id: str | None) -> int:
    """Apply the lessons as ADDs (one version); returns the new version."""
    store.ensure_library(library)
    ops = [Op(kind=OpKind.ADD, text=t, reason="directly generated from the training questions",
              provenance=Provenance(run_id=run_id, step=0, call_id=call_id)) for t in lessons]
    return store.apply(library, ops, dedup=True).version if ops else store.current_version(library)
