"""The store and a `Prior` for an evaluation with a library (or none, the baseline)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from experience_store import open_store
from tfgrpo.llm.call_log import MemoryCallLog


@contextmanager
def prior_for_eval(library: str, version: int | None, db: Path | None, **overrides) -> Iterator[tuple]:
    """Yield (apply_prior, library, version, call_log, on_done). `library == "none"` = no prior. The prior is
    the one the library version was trained with (`Prior.from_store`); `overrides` (not None) replace parts."""
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
        store.require_library(library)
        prior = Prior.from_store(store, library, version, **overrides)

        def on_done(result) -> None:
            store.record_eval(None, library, prior.version, result.task, result.model, result.metrics())

        yield prior.apply, library, prior.version, store, on_done
    finally:
        store.close()
