"""The Training-Free GRPO loop: run -> step (a LangGraph graph) -> stages (rollout, advantage, learner,
commit), with the learner's prompts and its parse/validate rules."""
