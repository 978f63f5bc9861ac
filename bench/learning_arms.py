"""The arms of the learning bench, in one table: adding an arm is one entry in `ARMS`.

kind:
  none       no prior
  train      a library trained by the Training-Free GRPO loop with `overrides` on TrainConfig; `needs` names
             the TrainConfig fields the overrides rely on (an arm whose fields this tfgrpo lacks is refused)
  retrieval  the k most similar training questions with their reference solutions as examples in the prompt
  gepa       GEPA tunes the system prompt on the training items with the paper arm's rollout budget
size: "main" arms are evaluated on the first N test items, "ablation" arms on the first `n_ablation`.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any

from tfgrpo.prior import Prior, inject, last_user_text


def _prior_defaults() -> dict[str, Any]:
    sig = inspect.signature(Prior.__init__)
    return {n: p.default for n, p in sig.parameters.items()
            if p.kind is p.KEYWORD_ONLY and n != "record_injections"}


# How `arm_prior` puts a library into the prompt (Prior's defaults; recorded in settings.json, train.json).
PRIOR_SETTINGS = _prior_defaults()
RETRIEVAL_K = 2
GATE = "n_gate"  # an override value taken from the bench's settings: gate_items = --n-gate (default 32)
GATE_ALPHA = 0.1  # the gate's significance level in the gated arms (TrainConfig's default)
RETRIEVAL_HEADER = "Worked examples of similar problems:"


class SettingsError(ValueError):
    """A refusal at start (bad arm, settings that differ from the table's, overlapping items): one line, exit 2."""


@dataclass(frozen=True)
class Arm:
    name: str
    kind: str  # none | train | retrieval | gepa
    label: str
    size: str = "main"  # main | ablation
    overrides: dict[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()  # TrainConfig fields that must exist
    optional: dict[str, Any] = field(default_factory=dict)  # overrides applied only when the field exists

    @property
    def learns(self) -> bool:
        """A learning arm: a trained library or a GEPA-tuned prompt."""
        return self.kind in ("train", "gepa")

    @property
    def train_file(self) -> str:
        """The file beside the item files that holds the arm's training result, once it is exported."""
        return f"{self.name}.train.json"


ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm("none", "none", "no prior"),
    Arm("paper", "train", "paper loop (lessons, no gate)", optional={"gate_items": 0, "learn_examples": False,
                                                                        "learner_context_tokens": 0}),
    Arm("ours-lax", "train", "ours, first gate (kept on any gain on the slice)",
        overrides={"gate_items": GATE, "learn_examples": True, "gate_alpha": 1.0},
        needs=("gate_items", "learn_examples", "gate_alpha")),
    Arm("ours", "train", f"ours (gate: gain with p <= {GATE_ALPHA:g} + lessons + examples)",
        overrides={"gate_items": GATE, "learn_examples": True, "gate_alpha": GATE_ALPHA},
        needs=("gate_items", "learn_examples", "gate_alpha")),
    Arm("retrieval", "retrieval", f"retrieval ({RETRIEVAL_K} nearest train solutions)"),
    Arm("gepa", "gepa", "GEPA (system prompt)"),
    Arm("ours-lessons", "train", "ours, lessons only", "ablation",
        overrides={"gate_items": GATE, "learn_examples": False, "gate_alpha": GATE_ALPHA},
        needs=("gate_items", "learn_examples", "gate_alpha")),
    Arm("ours-examples", "train", "ours, examples only", "ablation",
        overrides={"gate_items": GATE, "learn_lessons": False, "learn_examples": True, "gate_alpha": GATE_ALPHA},
        needs=("gate_items", "learn_lessons", "learn_examples", "gate_alpha")),
)}


def parse_arms(text: str) -> list[Arm]:
    """`none,paper,...` -> arms in the given order; an unknown name is refused, naming the valid ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ARMS]
    if unknown or not names:
        raise SettingsError(f"unknown arm(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(ARMS)}")
    return [ARMS[n] for n in dict.fromkeys(names)]


def missing_fields(arm: Arm, fields: dict[str, Any]) -> list[str]:
    """The fields `arm` needs that TrainConfig (`fields` = TrainConfig.model_fields) does not have."""
    return [f for f in arm.needs if f not in fields]


def train_overrides(arm: Arm, fields: dict[str, Any], settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The TrainConfig overrides of a training arm (its optional ones only where the field exists; a value
    naming a setting, like GATE, is that setting's value)."""
    out = {**{k: v for k, v in arm.optional.items() if k in fields}, **arm.overrides}
    return {k: (settings or {}).get(v, 32) if v == GATE else v for k, v in out.items()}


def arm_prior(store, library: str):
    """THE prior of a trained arm at evaluation: the one the library was trained with (its recorded settings),
    as `tfgrpo eval` and the proxy use it."""
    return Prior.from_store(store, library).apply


def _solution_text(ex) -> str:
    body = re.sub(r"<<[^<>]*>>", "", ex.solution or "").strip()  # GSM8K calculator annotations
    tail = f"The answer is \\boxed{{{ex.answer}}}."
    return f"{body}\n{tail}" if body else tail


def render_examples(examples: list) -> str:
    """The few-shot block: each example's question and its reference solution."""
    if not examples:
        return ""
    parts = [f"Problem: {ex.question.strip()}\nSolution: {_solution_text(ex)}" for ex in examples]
    return RETRIEVAL_HEADER + "\n\n" + "\n\n".join(parts)


class RetrievalPrior:
    """The `k` training questions nearest to the prompt's question (cosine of `embedder` vectors), with their
    reference solutions, injected like a library's block (same `inject`, same placement). `texts` are what is
    embedded for each training example: its prompt's user message, the same kind of text as the query."""

    def __init__(self, train_examples: list, texts: list[str], embedder, k: int = RETRIEVAL_K,
                 placement: str = PRIOR_SETTINGS["placement"]) -> None:
        self.examples, self.embedder, self.k, self.placement = list(train_examples), embedder, k, placement
        self._vecs = embedder.embed(list(texts))

    def nearest(self, query: str) -> list:
        q = self.embedder.embed([query])[0]
        sims = self._vecs @ q
        order = sorted(range(len(self.examples)), key=lambda i: (-float(sims[i]), i))
        return [self.examples[i] for i in order[: self.k]]

    def apply(self, messages: list[dict]) -> list[dict]:
        return inject(messages, render_examples(self.nearest(last_user_text(messages))), self.placement)
