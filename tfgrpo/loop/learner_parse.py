"""Parse and validate learner outputs (pydantic). Invalid output is never applied: it raises
`InvalidLearnerOutput` with the reason, and the caller retries or records a rejection."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tfgrpo.loop.learner_prose import prose_lessons


class InvalidLearnerOutput(ValueError):
    """The learner's output failed validation; `str(exc)` says why."""


def _balanced_spans(text: str) -> list[str]:
    """Every top-level balanced `{...}` span of `text`, in order (braces inside JSON strings ignored).

    One pass with a stack, so the time is linear in the text: a degenerate output such as 20 kB of
    `{` must not stall the run (rescanning from every `{` was quadratic: ~47 s for 20 kB). A learner that
    reasons before its JSON may write braces in its prose (LaTeX: `\\frac{1}{2}`), so every span is a
    candidate, not just the first."""
    spans: list[str] = []
    inner: list[tuple[int, str]] = []  # objects closed inside an outer brace (used if that one never closes)
    stack: list[int] = []
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
            (inner.append((start, text[start:i + 1])) if stack else spans.append(text[start:i + 1]))
    if stack:  # an outer brace never closed (truncated or stray): the objects complete inside it count too
        spans += [span for start, span in sorted(inner) if start > stack[0]]
    return spans


def _fenced(text: str) -> list[str]:
    """The first ```json fenced block that holds an object (split, not a regex: linear time)."""
    for part in text.split("```")[1::2]:
        body = part.strip()
        body = body[4:].strip() if body[:4].lower() == "json" else body
        if body.startswith("{") and body.endswith("}"):
            return [body]
    return []


def _first_json_object(text: str, key: str | None = None) -> dict:
    """Return the first JSON object in `text` (tolerates ```json fences and prose around it); with `key`,
    the first one that has that key (a learner that reasons first may quote small objects before it)."""
    candidates = _fenced(text) + _balanced_spans(text)
    first = None
    for cand in candidates:
        try:
            obj = json.loads(cand)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(obj, dict):
            if key is None or key in obj:
                return obj
            first = first if first is not None else obj
    if first is not None:
        return first
    raise InvalidLearnerOutput("no JSON object found in the learner output")


def word_count(text: str) -> int:
    return len(text.split())


class Revision(BaseModel):
    """The group stage's better text for a lesson the library already has (by id)."""

    model_config = ConfigDict(extra="ignore")
    id: int
    text: str


class Proposals(BaseModel):
    model_config = ConfigDict(extra="ignore")
    experiences: list[str]  # required: {"lessons": [...]} is a wrong shape, not "nothing learned"
    pattern: str = ""  # the kind of problem, in a few words (labels a worked example)
    revisions: list[Revision] = []  # optional: existing lessons this group shows to be wrong or incomplete


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
PLACEHOLDERS = {"lessonone", "lessontwo", "lessonthree", "when"}  # compared without spaces and punctuation
MIN_LESSON_WORDS = 3


def too_thin(lesson: str) -> bool:
    """True for a lesson that teaches nothing: a copied schema placeholder or a fragment of a few words."""
    return re.sub(r"[\W_]+", "", lesson.lower()) in PLACEHOLDERS or word_count(lesson) < MIN_LESSON_WORDS


@dataclass
class Extraction:
    """A group stage's validated output: new lessons, revisions of existing ones (id, text), the pattern."""

    lessons: list[str] = field(default_factory=list)
    pattern: str = ""
    revisions: list[tuple[int, str]] = field(default_factory=list)


def _proposals(text: str) -> Proposals:
    """The extraction's JSON object; when there is none with "experiences", the lessons its prose lists in
    the requested form (`learner_prose`)."""
    try:
        return Proposals.model_validate(_first_json_object(text, "experiences"))
    except (InvalidLearnerOutput, ValidationError) as exc:
        prose = prose_lessons(text)
        if prose is not None:
            return Proposals.model_validate(prose)
        if isinstance(exc, InvalidLearnerOutput):
            raise
        raise InvalidLearnerOutput(f"wrong shape: {exc.errors()[0]['msg']}") from None


def parse_group(text: str, finish_reason: str | None, *, k: int, max_words: int, question: str | None = None,
                live_ids: set[int] | frozenset[int] = frozenset()) -> Extraction:
    """Validate an extraction output. Lessons (and revisions) that repeat the question's numbers, copy the
    prompt's placeholder, are mere fragments or run over `max_words` are dropped, as are revisions of ids the
    library does not have; if nothing usable is left of a non-empty output, it is invalid (so the learner
    call is retried). An answer without the JSON object is read for "When ..., ..." lessons in its prose."""
    if finish_reason == "length":
        raise InvalidLearnerOutput("output truncated (finish_reason=length)")
    props = _proposals(text)
    out, too_long = [], []
    for i, p in enumerate(props.experiences[:k]):
        try:
            out.append(_check_text(p, max_words, f"experience {i + 1}"))
        except InvalidLearnerOutput as exc:  # an over-long lesson is dropped; the others still count
            if not p.strip():
                raise
            too_long.append(str(exc))
    kept = [p for p in out if not specific_to(p, question) and not too_thin(p)]
    if too_long and not kept:
        raise InvalidLearnerOutput("; ".join(too_long))
    revisions: dict[int, str] = {}
    for i, r in enumerate(props.revisions[:k]):
        try:
            t = _check_text(r.text, max_words, f"revision {i + 1}")
        except InvalidLearnerOutput:
            continue
        if r.id in live_ids and not specific_to(t, question) and not too_thin(t):
            revisions.setdefault(r.id, t)
    if (out or props.revisions) and not kept and not revisions:
        raise InvalidLearnerOutput("no usable lesson: each one repeats the problem's own numbers, copies the "
                                   "placeholder, is a fragment or revises a lesson the library does not have")
    pattern = " ".join(props.pattern.split())[:200]
    copied = pattern.lower().strip(".") in ("kind of problem", "")
    return Extraction(list(dict.fromkeys(kept)), "" if copied or specific_to(pattern, question) else pattern,
                      list(revisions.items()))


def parse_extraction(text: str, finish_reason: str | None, *, k: int, max_words: int,
                     question: str | None = None) -> tuple[list[str], str]:
    """(at most k lesson texts, the problem pattern it names) of `parse_group`."""
    ex = parse_group(text, finish_reason, k=k, max_words=max_words, question=question)
    return ex.lessons, ex.pattern


def parse_proposals(text: str, finish_reason: str | None, *, k: int, max_words: int,
                    question: str | None = None) -> list[str]:
    """The lessons of `parse_extraction`."""
    return parse_extraction(text, finish_reason, k=k, max_words=max_words, question=question)[0]


@dataclass
class ParsedOps:
    """A consolidation output validated op by op: the ops kept and the ones refused, each with its reason."""

    ops: list[OpIn] = field(default_factory=list)
    refused: list[tuple[OpIn, str]] = field(default_factory=list)


def _check_op(op: OpIn, where: str, *, live_ids: set[int], n_proposals: int, max_words: int,
              touched: set[int]) -> list[int]:
    """The ids `op` changes; raises InvalidLearnerOutput naming what is wrong with it."""
    if any(not 1 <= f <= n_proposals for f in op.from_):
        raise InvalidLearnerOutput(f"{where}: cites a candidate number outside 1..{n_proposals}")
    if op.op in ("ADD", "UPDATE", "MERGE"):
        op.text = _check_text(op.text, max_words, where)
    if op.op in ("UPDATE", "DELETE"):
        if op.id is None or op.id not in live_ids:
            raise InvalidLearnerOutput(f"{where}: unknown or deleted id {op.id}")
        ids = [op.id]
    elif op.op == "MERGE":
        if len(set(op.ids)) < 2 or any(x not in live_ids for x in op.ids):
            raise InvalidLearnerOutput(f"{where}: MERGE needs >= 2 live ids, got {op.ids}")
        ids = op.ids
    else:
        ids = []
    if touched & set(ids):
        raise InvalidLearnerOutput(f"{where}: id {sorted(touched & set(ids))} changed twice in one batch")
    return ids


def parse_ops(text: str, finish_reason: str | None, *, live_ids: set[int], n_proposals: int,
              max_words: int) -> ParsedOps:
    """Validate a consolidation output against the live library, op by op: valid ops are kept, the others
    refused with their reasons. The output as a whole is invalid (retried) when it is truncated, not the
    expected JSON, or when it has ops and none of them is valid."""
    if finish_reason == "length":
        raise InvalidLearnerOutput("output truncated (finish_reason=length)")
    try:
        ops = OpsOut.model_validate(_first_json_object(text, "ops")).ops
    except ValidationError as exc:
        raise InvalidLearnerOutput(f"wrong shape: {exc.errors()[0]['msg']}") from None
    out, touched = ParsedOps(), set()
    for i, op in enumerate(ops):
        try:
            touched |= set(_check_op(op, f"op {i + 1} ({op.op})", live_ids=live_ids, n_proposals=n_proposals,
                                     max_words=max_words, touched=touched))
            out.ops.append(op)
        except InvalidLearnerOutput as exc:
            out.refused.append((op, str(exc)))
    if ops and not out.ops:
        raise InvalidLearnerOutput("no valid op: " + "; ".join(reason for _, reason in out.refused))
    return out
