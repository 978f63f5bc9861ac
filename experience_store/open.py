"""The one way to open the store from a command or the API: `--db` or the default file, the embedder
named by `TFGRPO_EMBED_MODEL` (else the one each library was built with)."""

from __future__ import annotations

import os
from pathlib import Path

from .embed import default_embedder
from .paths import default_db_path
from .store import ExperienceStore


def open_store(db: str | Path | None = None, *, read_only: bool = False) -> ExperienceStore:
    """Open `db` (default `$TFGRPO_HOME/tfgrpo.duckdb`); a read-only open of a missing file is refused."""
    path = Path(db).expanduser() if db else default_db_path()
    model = os.environ.get("TFGRPO_EMBED_MODEL")
    return ExperienceStore(path, embedder=default_embedder(model) if model else None, read_only=read_only)
