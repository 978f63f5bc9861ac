"""Parse and validate learner outputs (pydantic). Invalid output is never applied: it raises
`InvalidLearnerOutput` with the reason, and the caller retries or records a rejection."""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class InvalidLearnerOutput(ValueError):
    """The learner's output failed validation; `str(exc)` says why."""


def _first_json_object(text: str) -> dict:
    """Return the first JSON object in `text` (tolerates ```json fences and prose around it)."""
    fenced = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.S)
    candidates = [fenced.group(1)] if fenced else []
    start = text.find("{")
    while start != -1:
        depth, in_str, esc = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_str:
                esc = (ch == "\\") and not esc
                if ch == '"' and not esc:
                    in_str = False
                continue
            if ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    candidates.append(text[start:i + 1])
                    break
        start = text.find("{", start + 1) if not candidates else -1
    for cand in candidates:
        try:
            obj = json.loads(cand)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    raise InvalidLearnerOutput("no JSON object found in the learner output")


def word_count(text: str) -> int:
    return len(text.split())


class Proposals(BaseModel):
    model_config = ConfigDict(extra="ignore")
    experiences: list[str] = Field(default_factory=list)


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


def parse_proposals(text: str, finish_reason: str | None, *, k: int, max_words: int) -> list[str]:
    """Validate an extraction output; returns at most k lesson texts."""
    if finish_reason == "length":
        raise InvalidLearnerOutput("output truncated (finish_reason=length)")
    try:
        props = Proposals.model_validate(_first_json_object(text))
    except ValidationError as exc:
        raise InvalidLearnerOutput(f"wrong shape: {exc.errors()[0]['msg']}") from None
    out = [_check_text(p, max_words, f"experience {i + 1}") for i, p in enumerate(props.experiences[:k])]
    return list(dict.fromkeys(out))


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
