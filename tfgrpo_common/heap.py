"""Keeping the garbage collector off the hot path.

A training step or an evaluation allocates tens of thousands of objects (requests, records, rollouts) on top
of a heap of long-lived ones (modules, LangGraph, pydantic models, the tokenizer). Three things make the
collector cheap there:

- CPython's full (oldest generation) collection walks the whole heap each time; measured in
  `bench/overhead.py` (1,000 rollouts), three of them took 0.39 s of a 4.8 s step. `frozen_heap()` moves what
  exists when a run starts into the permanent generation (`gc.freeze`), so the collections during the run walk
  only what the run allocated, and gives it back (`gc.unfreeze`) when the run ends, so garbage from before the
  run is still collected afterwards.
- A step's calls in flight are alive together: 1,000 of them hold about 120,000 tracked objects (coroutines,
  closures' cells, timers, connections), and with the default threshold (a young collection every 700 net
  allocations) the collector walked them again and again while the requests were being sent: 129 ms of
  collections in a step at L = 1 s, 43 ms of it one full collection in the middle of the burst. Inside the
  block the youngest generation's threshold is `HOT_THRESHOLD` (100,000 net allocations): one or two
  collections in such a step (25-47 ms in all). Objects freed by their reference count never count against
  it, so what can wait longer to be collected is only cyclic garbage, at most that many objects.
- Even one collection of those objects in the middle of a burst of requests delays every request after it
  (25-50 ms at 1,000 rollouts; at 10,000 the burst holds ten times the objects). `burst()` (what
  `gather_or_cancel(stagger=True)` starts its tasks in) makes no collection while a burst is sent, and freezes
  what it leaves alive (the calls in flight, whose objects die by their reference counts as the answers come
  back), so no later collection of the run walks them either. A whole 1,000-rollout step left 289 objects of
  cyclic garbage (a collection at its end), which frozen objects keep until the run ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

HOT_THRESHOLD = 100_000

_depth = 0
_bursts = 0
_enabled_before = True


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze the heap as it is and raise the young generation's threshold for the duration of the block
    (nested blocks share the outermost one's)."""
    global _depth
    if _depth == 0:
        gc.freeze()
        before = gc.get_threshold()
        gc.set_threshold(max(before[0], HOT_THRESHOLD), *before[1:])
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            gc.set_threshold(*before)
            gc.unfreeze()


@contextmanager
def burst() -> Iterator[None]:
    """No collection during the block; at its end, what exists is frozen (given back with the heap when the run
    ends). Only inside `frozen_heap` (a hot run): elsewhere it does nothing. Nested blocks share the outermost."""
    global _bursts, _enabled_before
    if _depth == 0:
        yield
        return
    if _bursts == 0:
        _enabled_before = gc.isenabled()
        gc.disable()
    _bursts += 1
    try:
        yield
    finally:
        _bursts -= 1
        if _bursts == 0:
            gc.freeze()  # also resets the young generation's count: no collection falls due right after
            if _enabled_before:
                gc.enable()
