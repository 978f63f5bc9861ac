"""Where the store lives: `$TFGRPO_HOME/tfgrpo.duckdb`, TFGRPO_HOME defaulting to ~/.local/share/tfgrpo."""

from __future__ import annotations

import os
from pathlib import Path

DB_FILENAME = "tfgrpo.duckdb"


def tfgrpo_home() -> Path:
    """The tfgrpo data directory: `$TFGRPO_HOME`, else `~/.local/share/tfgrpo`."""
    env = os.environ.get("TFGRPO_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".local" / "share" / "tfgrpo"


def default_db_path() -> Path:
    """The default store file, `$TFGRPO_HOME/tfgrpo.duckdb` (the `--db` option overrides it)."""
    return tfgrpo_home() / DB_FILENAME
