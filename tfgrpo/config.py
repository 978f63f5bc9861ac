"""Pydantic configs, one per component. `extra="forbid"`: a misspelled key is an error, not ignored."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tfgrpo.llm.budget import BudgetConfig
from tfgrpo.llm.config import ModelConfig

__all__ = ["BudgetConfig", "ModelConfig", "SamplingConfig", "TaskOptions", "TrainConfig"]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplingConfig(_Config):
    """Sampling for rollouts and evaluation."""

    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature.")
    max_tokens: int = Field(512, ge=1, description="Max completion tokens (>= 512 for math).")


class TaskOptions(_Config):
    """How the task is loaded: agent mode, a user's own file, the reward kind."""

    agent: Literal["react"] | None = Field(None, description="Solve with the ReAct agent and tools.")
    max_turns: int = Field(5, ge=1, description="Agent mode: max model turns per rollout.")
    data_file: str | None = Field(None, description="Task `jsonl`: the user's JSONL file.")
    reward: str | None = Field(None, description="Reward kind (jsonl: exact|numeric|math|regex; hotpotqa: f1|em).")
    sandbox: Literal["bwrap", "process"] = Field(
        "bwrap", description="Agent mode: where the python tool runs: bwrap (isolated from the host's files, "
                             "network and processes; needs bubblewrap) or process (weaker: same filesystem "
                             "and network).")

    def load_kwargs(self) -> dict:
        """The keyword arguments of `tasks.registry.load_task` these options stand for."""
        return {"agent": self.agent, "data_file": self.data_file, "reward": self.reward,
                "max_turns": self.max_turns, "sandbox": self.sandbox}


class TrainConfig(_Config):
    """`tfgrpo train`: the Training-Free GRPO loop."""

    task: str
    task_options: TaskOptions = TaskOptions()
    library: str = "default"
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(4, ge=1, description="Questions per step (B).")
    group_size: int = Field(5, ge=1, description="Rollouts per question (G); >= 2 unless allow_group_of_one.")
    allow_group_of_one: bool = Field(False, description="Allow G=1 (no group comparison; an ablation).")
    limit: int | None = Field(None, ge=1, description="Use only the first N training questions.")
    seed: int = 0
    split: str = "train"
    rollout: SamplingConfig = SamplingConfig()
    learner_temperature: float = Field(0.3, ge=0, le=2)
    learner_max_tokens: int = Field(768, ge=64)
    max_proposals: int = Field(2, ge=1, description="Experience proposals per group (K).")
    max_words: int = Field(32, ge=4, description="Max words per experience (N).")
    learn_all_wrong: bool = Field(True, description="Learn from all-wrong groups using the reference answer.")
    learn_all_right: bool = Field(False, description="Also learn from all-right groups.")
    ground_truth: bool = Field(True, description="False: rewards by majority vote; no gold label in prompts.")
    learner_retries: int = Field(2, ge=0, description="Retries of a malformed learner output.")
    fallback_add: bool = Field(False, description="If consolidation output stays invalid, ADD the validated "
                                                 "proposals as they are (the store dedups them).")
    prior_token_cap: int | None = Field(1024, ge=1, description="Token cap of the injected experience block.")
    placement: Literal["system", "user"] = Field("system", description="Where the experience block goes.")
    prior_mode: Literal["all", "topk"] = Field("all", description="all: every lesson up to the cap; topk: the k "
                                                                  "lessons nearest to the question.")
    prior_k: int = Field(8, ge=1, le=256, description="Lessons per call in topk mode.")
    prior_examples: int = Field(2, ge=0, le=16, description="Worked examples per call (the most similar).")
    learn_lessons: bool = Field(True, description="Learn lessons (advice) from the group comparisons.")
    learn_examples: bool = Field(True, description="Keep winning solutions of mixed groups as worked examples.")
    learner_context_tokens: int = Field(3000, ge=0, description="Show the learner a group's attempts themselves "
                                        "when they total at most this many tokens; summaries otherwise.")
    gate_items: int = Field(32, ge=0, le=100_000, description="Validation slice of train questions held out from "
                            "learning; an op batch becomes a version only if it scores better there (0: no gate).")
    gate_threshold: float = Field(0.0, ge=-1.0, le=1.0, description="Apply a batch only if its paired gain on the "
                                  "slice is greater than this.")
    gate_alpha: float = Field(0.1, gt=0.0, le=1.0, description="Apply a batch only if its gain on the slice is "
                              "also unlikely to be luck: a one-sided paired sign test over the slice items whose "
                              "score changed must give p <= this (1: off, any gain above the threshold passes).")
    prune_after: int = Field(0, ge=0, description="Pruning by evidence: once experiences have been in this many "
                             "prompts of mixed groups, propose deleting the one with the lowest win rate there "
                             "(the gate decides, as for any op). 0: off.")
    budget: BudgetConfig = BudgetConfig()

    def prior_settings(self) -> dict:
        """The prior this run renders in its rollouts, recorded with every version it writes."""
        return {"mode": self.prior_mode, "k": self.prior_k, "examples": self.prior_examples,
                "token_cap": self.prior_token_cap, "placement": self.placement}

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if not (self.learn_lessons or self.learn_examples):
            raise ValueError("nothing to learn: keep lessons, worked examples or both")
        if self.prune_after and not self.gate_items:
            raise ValueError("pruning by evidence needs the gate (its deletions are tested there): set "
                             "--gate-items above 0 or --prune-after 0")
        if self.gate_items and self.gate_alpha < 1 and 0.5 ** self.gate_items > self.gate_alpha:
            smallest = 0.5 ** self.gate_items  # every item of the slice won: the test's smallest p
            raise ValueError(f"a gate slice of {self.gate_items} items can never show p <= {self.gate_alpha:g} (its "
                             f"smallest p, every item won, is {smallest:.3g}), so every batch would be refused: use "
                             f"--gate-items {math.ceil(math.log2(1 / self.gate_alpha))} or more, or --gate-alpha "
                             f"{smallest:.3g} or more")
        if self.group_size < 2 and not self.allow_group_of_one:
            raise ValueError("group size must be >= 2 for a group comparison (use --group-size 2 or more, "
                             "or --allow-group-of-one for the G=1 ablation)")
        return self
