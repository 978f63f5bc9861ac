"""frozen_heap: the heap is frozen for a run's duration and given back after, so nothing leaks."""

from __future__ import annotations

import gc
import weakref

import pytest

from tfgrpo_common.heap import frozen_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic GC frees it


def test_the_heap_is_frozen_inside_and_given_back_after_even_on_error():
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with frozen_heap():  # nested: the outer freeze stands, nothing is frozen twice
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("a run that fails")
    assert gc.get_freeze_count() == 0


def test_garbage_from_before_a_run_is_collected_once_it_ends():
    node = Node()
    ref = weakref.ref(node)
    del node  # a cycle, still in the GC's lists when the run starts
    with frozen_heap():
        gc.collect()
        assert ref() is not None  # frozen: the run's collections do not walk it
        during = Node()
        during_ref = weakref.ref(during)
        del during
        gc.collect()
        assert during_ref() is None  # what the run allocates is collected as usual
    gc.collect()
    assert ref() is None  # given back after the run, and freed
