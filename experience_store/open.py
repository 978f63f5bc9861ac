"""The one way to open the store from a command or the API: `--db`, else `TFGRPO_DB`, else the default file;
the embedder named by `TFGRPO_EMBED_MODEL` (else the one each library was built with).

`--db` and `TFGRPO_DB` take a DuckDB file path or a PostgreSQL URL (`postgresql://user@host:5432/dbname`, also
`postgres://`; a password in the URL is used but never shown). DuckDB needs no server and is the default.
"""

from __future__ import annotations

import os
from pathlib import Path

from .embed import default_embedder
from .location import is_postgres_url
from .paths import default_db_path
from .store import ExperienceStore

DB_ENV = "TFGRPO_DB"


def store_location(db: str | Path | None = None) -> str | Path:
    """What `open_store(db)` opens: `db`, else `$TFGRPO_DB`, else `$TFGRPO_HOME/tfgrpo.duckdb`. A URL stays a
    string; a path gets `~` expanded."""
    chosen = db or os.environ.get(DB_ENV) or None
    if chosen is None:
        return default_db_path()
    if is_postgres_url(chosen):
        return str(chosen)
    return Path(chosen).expanduser()


def open_store(db: str | Path | None = None, *, read_only: bool = False) -> ExperienceStore:
    """Open `db` (see `store_location`); a read-only open of a missing file is refused."""
    model = os.environ.get("TFGRPO_EMBED_MODEL")
    return ExperienceStore(store_location(db), embedder=default_embedder(model) if model else None,
                           read_only=read_only)
