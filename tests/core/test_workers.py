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


def test_the_forward_pass_keeps_its_threads_in_a_fresh_process():
    """torch gives a thread, at its first parallel op, the count last set in any thread: in a fresh process whose
    main thread has not computed yet, the engine's readers and the sinks' thread (one torch thread each) must not
    leave the forward pass on one thread (settle_threads)."""
    import subprocess
    import textwrap

    code = textwrap.dedent("""
        import numpy as np, torch
        from tqdm import tqdm
        from segsuite.core import pipeline
        from segsuite.core.contracts import DataMeta, Job, ModelInfo
        from segsuite.core.inference import ArraySource, InferenceOptions, TilePredictor
        seen = []
        class Recorder(torch.nn.Module):
            def forward(self, x):
                seen.append(torch.get_num_threads())
                return x
        class Opened:
            sources, streaming, name = [ArraySource(np.ones((1, 40, 40), np.float32))], True, "item"
            def close(self): pass
        class Sink:
            def update(self, prediction): pass
            def close(self): return None
            def abort(self): pass
        torch.set_num_threads(2)  # no computation yet in this thread
        meta = DataMeta(in_channels=1, num_classes=1, class_names=("a",))
        job = Job(ModelInfo(TilePredictor(Recorder(), "cpu"), meta, 1, False),
                  options=InferenceOptions(tile=(16, 16), overlap=(4, 4), batch_size=2))
        class Reader:
            def open(self, item, job): return Opened()
        pipeline._through("predict", [(0, Opened())], Reader(), job, tqdm(total=0, disable=True), lambda *_: [Sink()])
        print(sorted(set(seen)))
    """)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[2]"
