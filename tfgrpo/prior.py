"""The token prior: render learned experiences into chat messages.

`Prior.apply` is THE one function that training rollouts, evaluation and deployment (Python API and
proxy) call, so what was measured is what ships. The experience block goes after the stable part of
the system prompt (placement "system", the default) so the prompt prefix stays cacheable, or in front
of the last user message (placement "user")."""

from __future__ import annotations

from typing import Any, Literal, Sequence

HEADER = ("Lessons learned from earlier attempts at similar problems. Apply the ones that fit; "
          "ignore the rest:")


def render_block(items: Sequence[tuple[int, str]]) -> str:
    """Render (id, text) pairs as the experience block. Empty input renders as an empty string."""
    if not items:
        return ""
    lines = [f"[E{eid}] {text.strip()}" for eid, text in items]
    return HEADER + "\n" + "\n".join(lines)


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
                return " ".join(p.get("text", "") for p in c if isinstance(p, dict))
    return ""


class Prior:
    """Experiences of `library` at `version` (latest when None), selected by `mode`:
    "all" = every live experience, most useful first (wins, then injections), cut at `token_cap`;
    "topk" = the k nearest to the query (the last user message), also cut at `token_cap`.
    `token_cap` bounds the whole rendered block (header included), so the tokens added to a prompt
    stay at or under it whatever the library size. The "all" selection is computed once per `Prior`
    (its version is fixed at construction), so applying it is cheap."""

    def __init__(self, store, library: str, version: int | None = None, *, mode: Literal["all", "topk"] = "all",
                 k: int = 8, token_cap: int | None = 1024, placement: Literal["system", "user"] = "system",
                 record_injections: bool = False) -> None:
        if mode not in ("all", "topk"):
            raise ValueError("mode must be 'all' or 'topk'")
        if placement not in ("system", "user"):
            raise ValueError("placement must be 'system' or 'user'")
        self.store, self.library, self.mode, self.k = store, library, mode, k
        self.token_cap, self.placement, self.record_injections = token_cap, placement, record_injections
        self.version = store.current_version(library) if version is None else version
        self._all: list[tuple[int, str]] | None = None
        self.last_ids: list[int] = []

    def _fit(self, ranked: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """Keep items in rank order while the whole rendered block (header, lines and the blank line
        that joins it to the prompt) stays within `token_cap`; returned in id order (stable text)."""
        if self.token_cap is None:
            return sorted(ranked)
        count, cap = self.store.count_tokens, self.token_cap
        used = count(HEADER) + 2
        chosen: list[tuple[int, str]] = []
        for eid, text in ranked:
            if cap - used < 4:
                break
            cost = count(f"[E{eid}] {text.strip()}") + 1
            if used + cost <= cap:
                chosen.append((eid, text))
                used += cost
        while chosen and count(render_block(sorted(chosen))) + 2 > cap:  # tokenizer edge effects
            chosen.pop()
        return sorted(chosen)

    def _select_all(self) -> list[tuple[int, str]]:
        if self._all is None:
            exps = self.store.experiences(self.library, self.version)
            exps = sorted(exps, key=lambda e: (-(e.times_won or 0), -(e.times_injected or 0), e.id))
            self._all = self._fit([(e.id, e.text) for e in exps])
        return self._all

    def select(self, messages: list[dict[str, Any]]) -> list[tuple[int, str]]:
        """The (id, text) pairs to inject for `messages`, in id order."""
        if self.mode == "all":
            return self._select_all()
        hits = self.store.search(self.library, last_user_text(messages), self.k, version=self.version)
        return self._fit([(e.id, e.text) for e, _ in hits])

    def apply_with_ids(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
        items = self.select(messages)
        ids = [i for i, _ in items]
        self.last_ids = ids
        if self.record_injections and ids:
            self.store.bump_counters(self.library, ids, injected=1)
        return inject(messages, render_block(items), self.placement), ids

    def apply(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.apply_with_ids(messages)[0]
