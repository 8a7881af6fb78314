"""Side-work pools: sized to the cores torch leaves, lower priority and one torch thread in their threads only."""

import os
import sys
import threading

import pytest
import torch

from segsuite.core.workers import Prefetch, cores, side_pool, thread_map


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's")
def test_side_threads_run_at_lower_priority_and_leave_the_callers_alone():
    import threading

    before, own = torch.get_num_threads(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    pool = side_pool(2, "test-side", nice=own + 5)
    try:
        seen = pool.submit(lambda: (os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
                                    torch.get_num_threads(), threading.current_thread().name)).result()
    finally:
        pool.shutdown()
    assert seen[0] == min(own + 5, 19) and seen[1] == 1 and seen[2].startswith("test-side")
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own  # the caller's thread keeps its own
    assert torch.get_num_threads() == before


def test_prefetch_loads_the_next_expected_inputs_ahead_in_order():
    loaded = []

    def load(key):
        loaded.append(key)
        return key * 10

    prefetch = Prefetch(workers=1, ahead=2, name="test-prefetch")
    for key in (1, 2, 3, 4, 5):
        prefetch.expect(key)
    assert prefetch.get(1, load) == 10
    prefetch.pool.submit(lambda: None).result()  # one worker: everything queued before this has run
    assert loaded == [1, 2, 3]  # the one asked for, then the next two
    assert [prefetch.get(k, load) for k in (2, 3, 4, 5)] == [20, 30, 40, 50]
    assert prefetch.get(9, load) == 90 and not prefetch.pending  # an unexpected key is loaded too; nothing left over
    assert sorted(loaded) == [1, 2, 3, 4, 5, 9]  # each once
    prefetch.pool.shutdown()


def test_thread_map_keeps_order_and_uses_up_to_a_core_each():
    seen = set()

    def square(x):
        seen.add(threading.get_ident())
        return x * x

    assert thread_map(square, [3, 1, 2]) == [9, 1, 4]
    assert 1 <= len(seen) <= cores(3) <= 3 and cores(0) == 1
