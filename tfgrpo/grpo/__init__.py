"""Weight-update GRPO (TRL) on the same tasks and rewards as Training-Free GRPO.

Importing this package never imports torch, transformers, trl, peft or datasets: they are imported
inside the functions that need them (install them with `pip install 'tfgrpo[grpo]'`).

- `run_grpo(GrpoConfig(...))`: train, write the checkpoint folder, record a run row (kind "grpo").
- `HFChatModel.from_checkpoint(DIR)`: a `ChatModel` over transformers generation, for the eval harness.
- `read_meta(DIR)` / `cost_of(meta)`: what a checkpoint is and what its training cost.
"""

from tfgrpo.grpo.backend import TrainOutcome, TrlBackend, WeightBackend
from tfgrpo.grpo.config import GrpoConfig
from tfgrpo.grpo.hf_chat import HFChatModel
from tfgrpo.grpo.meta import META_FILE, CheckpointMeta, ModelSource, cost_of, read_meta
from tfgrpo.grpo.rewards import TaskReward, build_rows, completion_text
from tfgrpo.grpo.run import run_grpo

__all__ = [
    "CheckpointMeta", "GrpoConfig", "HFChatModel", "META_FILE", "ModelSource", "TaskReward", "TrainOutcome",
    "TrlBackend", "WeightBackend", "build_rows", "completion_text", "cost_of", "read_meta", "run_grpo",
]
