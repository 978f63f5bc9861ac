"""Worked examples: a winning rollout of a mixed group kept in the solver's own words and at its own length
(only lightly trimmed), labelled with the problem pattern it fits. A terse reference solution can pull a
small solver into terse, error-prone answers; its own winning solution shows it a way it can follow."""

from __future__ import annotations

import re
from typing import Any

from experience_store import MAX_TEXT_CHARS, Op, OpKind, Provenance

#: Room left in a stored example for its labels ("Problem type:", "Problem:", "Solution:").
_LABELS = 80


def trim(text: str) -> str:
    """Whitespace tidied: trailing spaces gone, runs of blank lines collapsed to one."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def example_text(question: str, solution: str, pattern: str = "") -> str:
    head = f"Problem type: {pattern}\n" if pattern else ""
    return f"{head}Problem: {question.strip()}\nSolution: {trim(solution)}"


def pick_winner(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The winning rollout to keep: a correct, well-formatted, complete answer; the shortest such one
    whose example fits the store (a shorter correct solution is the easier one to follow)."""
    winners = [r for r in rows if r.get("reward", 0) >= 1.0 and not r.get("error")
               and r.get("finish_reason") != "length" and r.get("extra", {}).get("format_ok", True)
               and not r.get("extra", {}).get("trajectory")]
    fits = [r for r in winners if len(example_text(r["question"], r["completion"])) + _LABELS <= MAX_TEXT_CHARS]
    return min(fits, key=lambda r: len(r["completion"])) if fits else None


def example_op(rows: list[dict[str, Any]], pattern: str, *, run_id: str, step: int, qid: str) -> Op | None:
    """An ADD of the group's worked example, with the rollout as its provenance; None when none fits."""
    row = pick_winner(rows)
    if row is None:
        return None
    text = example_text(row["question"], row["completion"], pattern[:_LABELS])
    return Op(kind=OpKind.ADD, exp_kind="example", text=text[:MAX_TEXT_CHARS],
              reason=f"winning solution of a mixed group (reward {row['reward']:.2f})",
              provenance=Provenance(run_id=run_id, step=step, group_id=qid, rollout_ids=[row["id"]]))
