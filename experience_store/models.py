"""Pydantic models of the experience store: what callers send (ops) and what they get back."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Longest experience text the store accepts (characters): lessons are a sentence, worked examples a
#: trimmed solution.
MAX_TEXT_CHARS = 2000

#: What an experience is: a lesson (one piece of advice, shown to every question) or a worked example
#: (a winning solution with the problem pattern it fits, shown to the most similar questions).
ExperienceKind = Literal["lesson", "example"]


class OpKind(str, Enum):
    """What an op does to the library."""

    ADD = "ADD"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    MERGE = "MERGE"
    NONE = "NONE"


class Provenance(BaseModel):
    """Where an op came from: the run, step, question group, rollouts and learner call behind it."""

    model_config = ConfigDict(extra="forbid")

    run_id: str | None = Field(None, description="Run that proposed the op.")
    step: int | None = Field(None, description="Training step within the run.")
    group_id: str | None = Field(None, description="Question / group id whose rollouts were compared.")
    rollout_ids: list[str] = Field(default_factory=list, description="Rollouts the op was drawn from.")
    call_id: str | None = Field(None, description="id of the learner LLM call (llm_calls.id).")


class Op(BaseModel):
    """One change to a library.

    - ADD: `text` is stored as a new experience with a fresh id.
    - UPDATE: experience `target_id` gets `text`.
    - DELETE: experience `target_id` stops being live (its id is never reused).
    - MERGE: `merge_ids` (two or more live ids) are merged INTO THE FIRST id, which gets `text`;
      the other ids are deleted and point to the first through `merged_into`. The surviving id keeps
      its history and its counters absorb the others'.
    - NONE: recorded as a no-op; never creates a version on its own.
    """

    model_config = ConfigDict(extra="forbid")

    kind: OpKind
    text: str | None = Field(None, description="New text (ADD / UPDATE / MERGE).")
    target_id: int | None = Field(None, description="Experience changed (UPDATE / DELETE).")
    merge_ids: list[int] = Field(default_factory=list, description="MERGE: ids merged into merge_ids[0].")
    reason: str = Field("", description="Why the learner proposed this op.")
    provenance: Provenance = Field(default_factory=Provenance)
    exp_kind: ExperienceKind = Field("lesson", description="ADD: a `lesson` (advice) or an `example` (a worked "
                                                           "solution shown to similar questions).")

    @model_validator(mode="after")
    def _check_shape(self) -> Op:
        needs_text = self.kind in (OpKind.ADD, OpKind.UPDATE, OpKind.MERGE)
        if needs_text and (self.text is None or not self.text.strip()):
            raise ValueError(f"{self.kind.value} needs a non-empty `text`")
        if self.kind in (OpKind.UPDATE, OpKind.DELETE) and self.target_id is None:
            raise ValueError(f"{self.kind.value} needs `target_id` (the experience id to change)")
        if self.kind == OpKind.MERGE and len(set(self.merge_ids)) < 2:
            raise ValueError("MERGE needs `merge_ids` with at least two distinct ids")
        return self

    def ids_touched(self) -> list[int]:
        """Existing experience ids this op reads or changes."""
        if self.kind == OpKind.MERGE:
            return list(self.merge_ids)
        return [self.target_id] if self.target_id is not None else []


class Experience(BaseModel):
    """One experience as it reads at some version. Counters are the current totals."""

    library: str
    id: int
    text: str
    status: str = "live"
    created_at: datetime
    updated_at: datetime
    created_version: int
    updated_version: int
    times_injected: int = 0
    times_won: int = 0
    support: int = 1
    merged_into: int | None = None
    kind: ExperienceKind = "lesson"
    gate_delta: float = 0.0


class Version(BaseModel):
    """One library version: the live set after one op batch, with when and by which run/step."""

    library: str
    version: int
    created_at: datetime
    n_ops: int
    n_live: int
    run_id: str | None = None
    step: int | None = None


class OpRecord(BaseModel):
    """One row of op history: what changed, when (version), why and where it came from.

    `outcome` is "applied", "rejected" (e.g. a duplicate ADD; `duplicate_of` names the id it
    duplicated) or "noop" (a NONE op). `version` is the version the batch produced (or the
    unchanged current version when the batch changed nothing).
    """

    op_id: int
    library: str
    version: int
    kind: OpKind
    exp_id: int | None = None
    merge_ids: list[int] = Field(default_factory=list)
    before: str | None = None
    after: str | None = None
    reason: str = ""
    provenance: Provenance = Field(default_factory=Provenance)
    outcome: str = "applied"
    note: str | None = None
    duplicate_of: int | None = None
    similarity: float | None = None
    created_at: datetime | None = None


class Rejection(BaseModel):
    """An op the store did not apply, with the reason and, for duplicates, the id it duplicated."""

    op: Op
    reason: str
    duplicate_of: int | None = None
    similarity: float | None = None


class ApplyResult(BaseModel):
    """Outcome of `ExperienceStore.apply`: the resulting version and what happened to each op.

    `applied` (changed the library, or folded a duplicate into an existing experience), `rejected`
    (not stored, with the reason), `noops` (NONE ops, UPDATEs to the same text). `changed` is True
    when the batch made a new version; `new_ids` are the ids given to stored ADDs, in op order.
    """

    version: int
    applied: list[OpRecord] = Field(default_factory=list)
    rejected: list[Rejection] = Field(default_factory=list)
    noops: list[OpRecord] = Field(default_factory=list)
    new_ids: list[int] = Field(default_factory=list)
    changed: bool = False


class RolloutRow(BaseModel):
    """One sampled answer to one question. `id` is a deterministic key chosen by the caller."""

    model_config = ConfigDict(extra="forbid")

    id: str
    run_id: str
    step: int
    epoch: int = 0
    question_id: str
    question: str
    completion: str
    reward: float
    reward_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    version: int = 0
    finish_reason: str | None = None
    error: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
