"""The token prior: render learned experiences into chat messages.

`Prior.apply` is THE one function that training rollouts, evaluation and deployment (Python API and
proxy) call, so what was measured is what ships. Its settings (`PriorSettings`) are recorded with every
library version a run writes, and `Prior.from_store` reads them back, so a library is evaluated and
deployed with the prior it was trained with. Two kinds of experience are rendered under one token cap:
lessons (ordered by evidence: the gate's credit first, then the win rate in mixed groups, newer first)
and worked examples (the `examples` most similar to the question). The block goes after the stable part
of the system prompt (placement "system", the default: the prefix stays cacheable) or in front of the
last user message (placement "user")."""

from __future__ import annotations

from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

HEADER = ("Lessons learned from earlier attempts at similar problems. Apply the ones that fit; "
          "ignore the rest:")
EXAMPLES_HEADER = ("Worked examples of similar problems, solved correctly before. Follow the method, "
                   "not the numbers:")


class PriorSettings(BaseModel):
    """How a library is rendered into a prompt; stored with each version a training run writes."""

    model_config = ConfigDict(extra="ignore")

    mode: Literal["all", "topk"] = Field("all", description="all: every live lesson up to the cap; topk: the k "
                                                            "lessons nearest to the question.")
    k: int = Field(8, ge=1, le=256, description="Lessons per call in topk mode.")
    examples: int = Field(2, ge=0, le=16, description="Worked examples per call: the most similar to the question.")
    token_cap: int | None = Field(1024, ge=1, description="Max tokens the whole block adds to a prompt.")
    placement: Literal["system", "user"] = Field("system", description="Where the block goes.")


def render_block(items: Sequence[tuple[int, str]], examples: Sequence[tuple[int, str]] = ()) -> str:
    """Render (id, text) lessons and worked examples as the experience block ("" when both are empty)."""
    parts = []
    if items:
        parts.append(HEADER + "\n" + "\n".join(f"[E{eid}] {text.strip()}" for eid, text in items))
    if examples:
        parts.append(EXAMPLES_HEADER + "\n\n" + "\n\n".join(f"[X{eid}] {text.strip()}" for eid, text in examples))
    return "\n\n".join(parts)


def inject(messages: list[dict[str, Any]], block: str, placement: str = "system") -> list[dict[str, Any]]:
    """Return a copy of `messages` with `block` placed; never mutates the input."""
    msgs = [dict(m) for m in messages]
    if not block:
        return msgs
    if placement == "user":
        for m in reversed(msgs):
            if m.get("role") == "user" and isinstance(m.get("content"), str):
                m["content"] = f"{block}\n\n{m['content']}"
                return msgs
        return msgs + [{"role": "user", "content": block}]
    if msgs and msgs[0].get("role") == "system" and isinstance(msgs[0].get("content"), str):
        msgs[0]["content"] = f"{msgs[0]['content']}\n\n{block}"
        return msgs
    return [{"role": "system", "content": block}] + msgs


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                return " ".join(p["text"] for p in c if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def win_rate(e: Any) -> float:
    """An experience's smoothed win rate in the prompts of mixed groups: (won + 1) / (seen + 2)."""
    return ((e.times_won or 0) + 1) / ((e.times_injected or 0) + 2)


def evidence_key(e: Any) -> tuple:
    """Lesson order within the cap: the gate's credit, then the (smoothed) win rate in the prompts of
    mixed groups, then newer first, so the cap never keeps a lesson just because it is old."""
    return (-(e.gate_delta or 0.0), -win_rate(e), -e.id)


class Prior:
    """Experiences of `library` at `version` (latest when None) rendered by `PriorSettings`: lessons
    ("all": every live lesson by evidence; "topk": the k nearest to the last user message) and the
    `examples` worked examples nearest to it, the whole block within `token_cap` (header included)."""

    def __init__(self, store, library: str, version: int | None = None, *, mode: Literal["all", "topk"] = "all",
                 k: int = 8, token_cap: int | None = 1024, placement: Literal["system", "user"] = "system",
                 examples: int = 2, record_injections: bool = False, experiences: list | None = None) -> None:
        """`experiences`: the library's live experiences at `version`, when the caller has read them already."""
        if mode not in ("all", "topk"):
            raise ValueError("mode must be 'all' or 'topk'")
        if placement not in ("system", "user"):
            raise ValueError("placement must be 'system' or 'user'")
        self.settings = PriorSettings(mode=mode, k=k, examples=examples, token_cap=token_cap, placement=placement)
        self.store, self.library, self.mode, self.k = store, library, mode, k
        self.token_cap, self.placement, self.record_injections = token_cap, placement, record_injections
        self.n_examples = examples
        self.version = store.current_version(library) if version is None else version
        self._lessons: list[tuple[int, str]] | None = None
        self._has_examples: bool | None = None
        if experiences is not None:
            self._load(experiences)
        self.last_ids: list[int] = []
        self._counts: dict[str, int] = {}

    @classmethod
    def from_store(cls, store, library: str, version: int | None = None, **overrides: Any) -> "Prior":
        """The prior the library's version was trained with (its recorded settings; defaults where it has
        none), with `overrides` (those not None) on top."""
        version = store.resolve_version(library, version)
        stored = PriorSettings.model_validate(store.prior_settings(library, version) or {})
        merged = stored.model_copy(update={k: v for k, v in overrides.items() if v is not None and k != "record_injections"})
        return cls(store, library, version, **merged.model_dump(),
                   record_injections=bool(overrides.get("record_injections")))

    # -- selection -------------------------------------------------------------------------------
    def _count(self, text: str) -> int:
        """Tokens of `text`, remembered: a version's lessons and header are counted once, not per call."""
        n = self._counts.get(text)
        if n is None:
            if len(self._counts) >= 4096:
                self._counts.clear()
            n = self._counts[text] = self.store.count_tokens(text)
        return n

    def _fit(self, ranked: list[tuple[int, str]], examples: list[tuple[int, str]]) -> tuple[list, list]:
        """Examples (nearest first) and then lessons (in rank order) while the rendered block, with the blank
        line that joins it to the prompt, stays within `token_cap`; lessons come back in id order."""
        if self.token_cap is None or not (ranked or examples):
            return sorted(ranked), examples
        cap = self.token_cap
        while examples and self._count(render_block([], examples)) + 2 > cap:
            examples = examples[:-1]
        used = (self._count(render_block([], examples)) + 2 if examples else 0) + self._count(HEADER) + 2
        chosen: list[tuple[int, str]] = []
        for eid, text in ranked:
            if cap - used < 4:
                break
            cost = self._count(f"[E{eid}] {text.strip()}") + 1
            if used + cost <= cap:
                chosen.append((eid, text))
                used += cost
        while chosen and self._count(render_block(sorted(chosen), examples)) + 2 > cap:  # tokenizer edges
            chosen.pop()
        return sorted(chosen), examples

    def _all_lessons(self) -> list[tuple[int, str]]:
        if self._lessons is None:
            self._load(self.store.experiences(self.library, self.version))
        return self._lessons  # type: ignore[return-value]

    def _load(self, exps: list) -> None:
        self._has_examples = any(e.kind == "example" for e in exps)
        self._lessons = [(e.id, e.text) for e in sorted((e for e in exps if e.kind == "lesson"), key=evidence_key)]

    def _nearest(self, query: str, k: int, kind: str) -> list[tuple[int, str]]:
        if k <= 0 or not query:
            return []
        hits = self.store.search(self.library, query, k, version=self.version, kind=kind)
        return [(e.id, e.text) for e, _ in hits]

    def select_all(self, messages: list[dict[str, Any]]) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        """(lessons, worked examples) to inject for `messages`: lessons in id order, examples nearest first."""
        lessons = self._all_lessons()
        query = last_user_text(messages)
        if self.mode == "topk":
            lessons = self._nearest(query, self.k, "lesson")
        examples = self._nearest(query, self.n_examples, "example") if self._has_examples else []
        return self._fit(lessons, examples)

    def select(self, messages: list[dict[str, Any]]) -> list[tuple[int, str]]:
        """The (id, text) lessons to inject for `messages`, in id order (worked examples: `select_all`)."""
        return self.select_all(messages)[0]

    def apply_with_ids(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
        lessons, examples = self.select_all(messages)
        ids = [i for i, _ in lessons] + [i for i, _ in examples]
        self.last_ids = ids
        if self.record_injections and ids:
            self.store.bump_counters(self.library, ids, injected=1)
        return inject(messages, render_block(lessons, examples), self.placement), ids

    def apply(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.apply_with_ids(messages)[0]
