"""The experience library for Training-Free GRPO, on a DuckDB file (default) or PostgreSQL (a URL).

Experiences have stable ids, every op batch is one transaction that makes one new version, every
change is an op row with its provenance, and past versions can be read back (time travel).
`copy_library` moves a library with its whole history between two stores (either backend).
"""

from .copy import CopyResult, copy_library
from .embed import DEFAULT_MODEL, Embedder, HashEmbedder, SentenceTransformerEmbedder, default_embedder
from .models import (
    MAX_TEXT_CHARS,
    ApplyResult,
    Experience,
    Op,
    OpKind,
    OpRecord,
    Provenance,
    Rejection,
    RolloutRow,
    Version,
)
from .open import open_store
from .paths import default_db_path, tfgrpo_home
from .store import DEFAULT_DEDUP_THRESHOLD, ExperienceStore
from .tokens import count_tokens, token_counter_name

__all__ = [
    "DEFAULT_DEDUP_THRESHOLD",
    "DEFAULT_MODEL",
    "MAX_TEXT_CHARS",
    "ApplyResult",
    "CopyResult",
    "Embedder",
    "Experience",
    "ExperienceStore",
    "HashEmbedder",
    "Op",
    "OpKind",
    "OpRecord",
    "Provenance",
    "Rejection",
    "RolloutRow",
    "SentenceTransformerEmbedder",
    "Version",
    "copy_library",
    "count_tokens",
    "default_db_path",
    "default_embedder",
    "open_store",
    "tfgrpo_home",
    "token_counter_name",
]
