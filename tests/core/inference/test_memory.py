"""core.inference.memory: glibc's heap kept for reuse on the CPU (unless the user tunes glibc), trimmed otherwise; the
segsuite command's one heap for every thread."""

import json
import os
import subprocess
import sys

import pytest

from segsuite.core.glibc import one_heap
from segsuite.core.inference.memory import user_tuned

# In a fresh process (the setting is per process): a CPU predictor runs a small network whose activations are
# 64 MiB each, three times; with the heap kept the third pass reuses the first one's pages instead of faulting them in.
PROBE = """
import json, resource, threading
from segsuite.core.glibc import one_heap

ONE_HEAP and one_heap()  # as the segsuite command does, before torch starts a thread
import torch
from segsuite.core.inference import memory
from segsuite.core.inference.predictor import TilePredictor

net = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 1, 3, padding=1))
predictor = TilePredictor(net, "cpu")
x = torch.rand(1, 1, 1024, 1024)
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
counts = []


def passes():
    for _ in range(3):
        before = faults()
        predictor(x)
        counts.append(faults() - before)


thread = threading.Thread(target=passes) if THREAD else None  # as the demo page's requests run
thread.start() if thread else passes()
thread.join() if thread else None
print(json.dumps({"kept": memory.keep_heap(), "trimmer": memory.heap_trimmer() is not None, "faults": counts}))
"""


def _probe(thread: bool = False, one_heap: bool = False, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES",) and not k.startswith("MALLOC_")}
    code = f"THREAD, ONE_HEAP = {thread}, {one_heap}" + PROBE
    out = subprocess.run([sys.executable, "-c", code], env={**clean, "OMP_NUM_THREADS": "1", **env},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_the_users_own_glibc_settings_are_recognised():
    assert not user_tuned({}) and not user_tuned({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"})
    assert user_tuned({"MALLOC_MMAP_THRESHOLD_": "1048576"}) and user_tuned({"MALLOC_TRIM_THRESHOLD_": "0"})
    assert user_tuned({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1048576"})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_a_cpu_predictor_keeps_freed_memory_for_the_next_allocation():
    kept = _probe()
    if not kept["kept"]:
        pytest.skip("not glibc")
    first, _, third = kept["faults"]
    assert first > 16_000 and third < first / 10  # a 64 MiB activation is 16,384 pages: faulted in once
    assert not kept["trimmer"]  # trimming would hand the pages back


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_the_command_lets_a_forward_pass_on_any_thread_reuse_the_heap():
    kept = _probe(thread=True, one_heap=True)
    first, _, third = kept["faults"]
    assert first > 16_000 and third < first / 10
    for mine in ({"MALLOC_ARENA_MAX": "8"}, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=8"}):
        assert one_heap(mine) is False  # the user's arena count wins (nothing is set here)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_the_users_glibc_settings_win():
    mine = _probe(MALLOC_MMAP_THRESHOLD_="1048576")
    assert not mine["kept"]
    first, _, third = mine["faults"]
    assert third > first / 2 and third > 16_000  # mapped and faulted in again at every pass, as the user asked
    assert mine["trimmer"]  # the engine trims as before
