"""core.inference.memory: glibc's heap kept for reuse on the CPU (unless the user tunes glibc), trimmed otherwise."""

import json
import os
import subprocess
import sys

import pytest

from segsuite.core.inference.memory import user_tuned

# In a fresh process (the setting is per process): a CPU predictor keeps the heap, then a 64 MiB tensor allocated a
# second time reuses the first one's pages instead of faulting them in afresh.
PROBE = """
import json, resource, torch
from segsuite.core.inference import memory
from segsuite.core.inference.predictor import TilePredictor

TilePredictor(torch.nn.Conv2d(1, 1, 1), "cpu")
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
counts = []
for _ in range(2):
    before = faults()
    x = torch.ones(16 << 20)  # 64 MiB, touched
    del x
    counts.append(faults() - before)
print(json.dumps({"kept": memory.keep_heap(), "trimmer": memory.heap_trimmer() is not None, "faults": counts}))
"""


def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES",) and not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, "OMP_NUM_THREADS": "1", **env},
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
    first, second = kept["faults"]
    assert first > 10_000 and second < first / 10  # 16,384 pages the first time, reused the second
    assert not kept["trimmer"]  # trimming would hand the pages back


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_the_users_glibc_settings_win():
    mine = _probe(MALLOC_MMAP_THRESHOLD_="1048576")
    assert not mine["kept"]
    first, second = mine["faults"]
    assert second > first / 2  # mmapped and faulted in again, as the user asked
    assert mine["trimmer"]  # the engine trims as before
