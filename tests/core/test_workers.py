"""Side-work pools: sized to the cores torch leaves, lower priority and one torch thread in their threads only."""

import os
import sys

import pytest
import torch

from segsuite.core.workers import side_pool, spare_cores


def test_spare_cores_are_what_torch_leaves_at_least_one(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 12)
    assert spare_cores(3) == 3 and spare_cores(8) == 4
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    assert spare_cores(3) == 1  # every core to the forward pass: still one side thread


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
