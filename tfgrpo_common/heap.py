"""Keeping the garbage collector's full passes off the hot path.

A training step or an evaluation allocates tens of thousands of objects (requests, records, rollouts) on top
of a heap of long-lived ones (modules, LangGraph, pydantic models, the tokenizer). CPython's full (oldest
generation) collection walks the whole heap each time; measured in `bench/overhead.py` (1,000 rollouts), three
of them took 0.39 s of a 4.8 s step. `frozen_heap()` moves what exists when a run starts into the permanent
generation (`gc.freeze`), so the collections during the run walk only what the run allocated, and gives it back
(`gc.unfreeze`) when the run ends, so garbage from before the run is still collected afterwards."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze the heap as it is for the duration of the block (nested blocks share the outermost freeze)."""
    global _depth
    if _depth == 0:
        gc.freeze()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            gc.unfreeze()
