"""Open the store and a `Prior` for commands that evaluate with a library (`eval`, `compare`)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tfgrpo.errors import StoreError
from tfgrpo.llm.types import MemoryCallLog


def open_store(db: Path | None, *, read_only: bool = False):
    from experience_store import ExperienceStore
    from experience_store.paths import default_db_path

    path = Path(db) if db else default_db_path()
    if read_only and not path.exists():
        raise StoreError(f"no store at {path}; train a library first or pass --db")
    return ExperienceStore(path, read_only=read_only)


@contextmanager
def prior_for_eval(library: str, version: int | None, db: Path | None, *, mode: str = "all", k: int = 8,
                   token_cap: int | None = 1024) -> Iterator[tuple]:
    """Yield (apply_prior, library, version, call_log, on_done). `library == "none"` = no prior."""
    if library.lower() == "none":
        if db is None:  # a bare baseline run leaves no file behind
            yield None, None, None, MemoryCallLog(), lambda result: None
            return
        store = open_store(db)  # --db given: the baseline is recorded beside the libraries it is compared with
        try:
            yield None, None, None, store, lambda result: store.record_eval(None, None, None, result.task,
                                                                            result.model, result.metrics())
        finally:
            store.close()
        return
    from tfgrpo.prior import Prior

    store = open_store(db)
    try:
        if library not in store.libraries():
            raise StoreError(f"no library named {library!r}; known: {', '.join(store.libraries()) or 'none'}. "
                             "Train one with `tfgrpo train --library NAME` or use --library none")
        prior = Prior(store, library, version, mode=mode, k=k, token_cap=token_cap)

        def on_done(result) -> None:
            store.record_eval(None, library, prior.version, result.task, result.model, result.metrics())

        yield prior.apply, library, prior.version, store, on_done
    finally:
        store.close()
