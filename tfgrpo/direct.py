"""The "directly generated experiences" ablation: the learner writes lessons from the training questions
alone — no rollouts, no rewards, no group comparison — and they are stored as one version."""

from __future__ import annotations

from experience_store import Op, OpKind, Provenance
from tfgrpo.learner_parse import InvalidLearnerOutput, parse_proposals
from tfgrpo.llm.types import ChatModel
from tfgrpo.prompts import render


async def direct_experiences(model: ChatModel, questions: list[str], *, k: int = 6, max_words: int = 32,
                             retries: int = 2, seed: int = 0) -> tuple[list[str], str | None]:
    """Return (lessons, call_id); an output that never validates returns ([], None)."""
    prompt = render("direct", questions=questions, k=k, max_words=max_words)
    for attempt in range(retries + 1):
        [c] = await model.chat([{"role": "user", "content": prompt}], temperature=0.3, max_tokens=k * max_words * 3,
                               stage="direct", seed=seed + attempt)
        try:
            return parse_proposals(c.text, c.finish_reason, k=k, max_words=max_words), c.call_id
        except InvalidLearnerOutput:
            continue
    return [], None


def store_direct(store, library: str, lessons: list[str], run_id: str | None, call_id: str | None) -> int:
    """Apply the lessons as ADDs (one version); returns the new version."""
    store.ensure_library(library)
    ops = [Op(kind=OpKind.ADD, text=t, reason="directly generated from the training questions",
              provenance=Provenance(run_id=run_id, step=0, call_id=call_id)) for t in lessons]
    return store.apply(library, ops, dedup=True).version if ops else store.current_version(library)
