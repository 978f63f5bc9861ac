"""Where the store lives: `$TFGRPO_HOME/tfgrpo.duckdb` (the home folder is `tfgrpo_common.paths`)."""

from __future__ import annotations

from pathlib import Path

from tfgrpo_common.paths import tfgrpo_home

DB_FILENAME = "tfgrpo.duckdb"


def default_db_path() -> Path:
    """The default store file, `$TFGRPO_HOME/tfgrpo.duckdb` (the `--db` option overrides it)."""
    return tfgrpo_home() / DB_FILENAME
