"""Parse and validate learner outputs (pydantic). Invalid output is never applied: it raises
`InvalidLearnerOutput` with the reason, and the caller retries or records a rejection."""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class InvalidLearnerOutput(ValueError):
    """The learner's output failed validation; `str(exc)` says why."""


def _first_balanced(text: str) -> str | None:
    """The balanced `{...}` span that starts first in `text` (braces inside JSON strings ignored).

    One pass with a stack, so the time is linear in the text: a degenerate output such as 20 kB of
    `{` must not stall the run (rescanning from every `{` was quadratic: ~47 s for 20 kB)."""
    stack: list[int] = []
    best: tuple[int, int] | None = None
    in_str = esc = False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"' and stack:
            in_str = True
        elif ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            start = stack.pop()
            if not stack:
                return text[start:i + 1]
            if best is None or start < best[0]:
                best = (start, i + 1)
    return text[best[0]:best[1]] if best else None


def _fenced(text: str) -> list[str]:
    """The first ```json fenced block that holds an object (split, not a regex: linear time)."""
    for part in text.split("```")[1::2]:
        body = part.strip()
        body = body[4:].strip() if body[:4].lower() == "json" else body
        if body.startswith("{") and body.endswith("}"):
            return [body]
    return []


def _first_json_object(text: str) -> dict:
    """Return the first JSON object in `text` (tolerates ```json fences and prose around it)."""
    candidates = _fenced(text)
    span = _first_balanced(text)
    if span is not None:
        candidates.append(span)
    for cand in candidates:
        try:
            obj = json.loads(cand)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(obj, dict):
            return obj
    raise InvalidLearnerOutput("no JSON object found in the learner output")


def word_count(text: str) -> int:
    return len(text.split())


class Proposals(BaseModel):
    model_config = ConfigDict(extra="ignore")
    experiences: list[str]  # required: {"lessons": [...]} is a wrong shape, not "nothing learned"


class OpIn(BaseModel):
    """One consolidation op as the learner wrote it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    op: Literal["ADD", "UPDATE", "DELETE", "MERGE", "NONE"]
    text: str | None = None
    id: int | None = None
    ids: list[int] = Field(default_factory=list)
    from_: list[int] = Field(default_factory=list, alias="from")
    reason: str = ""

    @field_validator("op", mode="before")
    @classmethod
    def _upper(cls, v):
        return v.upper().strip() if isinstance(v, str) else v


class OpsOut(BaseModel):
    model_config = ConfigDict(extra="ignore")
    ops: list[OpIn]


def _check_text(text: str | None, max_words: int, where: str) -> str:
    text = (text or "").strip()
    if not text:
        raise InvalidLearnerOutput(f"{where}: empty text")
    if word_count(text) > max_words:
        raise InvalidLearnerOutput(f"{where}: {word_count(text)} words > limit {max_words}")
    return text


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in re.findall(r"\d[\d,]*(?:\.\d+)?", text)}


def specific_to(lesson: str, question: str | None, min_digits: int = 2) -> bool:
    """True when the lesson repeats a number (>= min_digits digits) of the question verbatim: such a
    lesson memorizes an item instead of teaching a method."""
    if not question:
        return False
    q = {n for n in _numbers(question) if len(n.replace(".", "")) >= min_digits}
    return bool(q & _numbers(lesson))


# The schema examples in the learner prompts; a small model sometimes copies them back as its answer.
PLACEHOLDERS = {"lesson one", "lesson two", "lesson three"}
MIN_LESSON_WORDS = 3


def too_thin(lesson: str) -> bool:
    """True for a lesson that teaches nothing: a copied schema placeholder or a fragment of a few words."""
    return lesson.strip().strip(".").lower() in PLACEHOLDERS or word_count(lesson) < MIN_LESSON_WORDS


def parse_proposals(text: str, finish_reason: str | None, *, k: int, max_words: int,
                    question: str | None = None) -> list[str]:
    """Validate an extraction output; returns at most k lesson texts. Lessons that repeat the question's
    numbers, copy the prompt's placeholder or are mere fragments are dropped; if every lesson is dropped,
    the output is invalid (so the learner call is retried)."""
    if finish_reason == "length":
        raise InvalidLearnerOutput("output truncated (finish_reason=length)")
    try:
        props = Proposals.model_validate(_first_json_object(text))
    except ValidationError as exc:
        raise InvalidLearnerOutput(f"wrong shape: {exc.errors()[0]['msg']}") from None
    out = [_check_text(p, max_words, f"experience {i + 1}") for i, p in enumerate(props.experiences[:k])]
    kept = [p for p in out if not specific_to(p, question) and not too_thin(p)]
    if out and not kept:
        raise InvalidLearnerOutput("no usable lesson: each one repeats the problem's own numbers, copies the "
                                   "placeholder or is a fragment")
    return list(dict.fromkeys(kept))


def parse_ops(text: str, finish_reason: str | None, *, live_ids: set[int], n_proposals: int,
              max_words: int) -> list[OpIn]:
    """Validate a consolidation output against the live library; all ops valid or none."""
    if finish_reason == "length":
        raise InvalidLearnerOutput("output truncated (finish_reason=length)")
    try:
        ops = OpsOut.model_validate(_first_json_object(text)).ops
    except ValidationError as exc:
        raise InvalidLearnerOutput(f"wrong shape: {exc.errors()[0]['msg']}") from None
    touched: set[int] = set()
    for i, op in enumerate(ops):
        where = f"op {i + 1} ({op.op})"
        if any(not 1 <= f <= n_proposals for f in op.from_):
            raise InvalidLearnerOutput(f"{where}: cites a candidate number outside 1..{n_proposals}")
        if op.op in ("ADD", "UPDATE", "MERGE"):
            op.text = _check_text(op.text, max_words, where)
        if op.op in ("UPDATE", "DELETE"):
            if op.id is None or op.id not in live_ids:
                raise InvalidLearnerOutput(f"{where}: unknown or deleted id {op.id}")
            ids = [op.id]
        elif op.op == "MERGE":
            if len(op.ids) < 2 or any(x not in live_ids for x in op.ids):
                raise InvalidLearnerOutput(f"{where}: MERGE needs >= 2 live ids, got {op.ids}")
            ids = op.ids
        else:
            ids = []
        if touched & set(ids):
            raise InvalidLearnerOutput(f"{where}: id {sorted(touched & set(ids))} changed twice in one batch")
        touched |= set(ids)
    return ops
