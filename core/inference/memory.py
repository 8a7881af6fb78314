"""Keeping the CPU's memory and cores to the forward pass: :func:`heap_trimmer` hands glibc's free heap back,
:class:`one_thread` keeps the light work around the forward pass off torch's intra-op pool."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable
from typing import Any

import torch


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_trimmer(limit: int = 64 << 20) -> Callable[[], Any] | None:
    """A function handing glibc's free heap memory back to the system (``malloc_trim``) once it exceeds ``limit``
    bytes (``mallinfo2().fordblks``); None where the C library is not glibc 2.33 or later.

    glibc keeps freed heap memory for reuse, and a network's activations of many sizes (under its 32 MiB mmap
    threshold) freed between our row blocks leave it ever more fragmented: on the CPU the peak grew with the number
    of batches, 379 MiB added at 8192^2 against 288 MiB at 2048 x 8192 for Unet-ResNet18, and 245 MiB for both with
    every large allocation mmapped. Trimming before a forward pass once more than ``limit`` is free keeps it flat
    (323 and 305 MiB); trimming before every batch cost the light pipeline 8 % (its blocks fault back in), and a 32
    MiB limit trimmed on most batches of the no-compute model, whose blocks and tiles alone churn that much. PyTorch
    has no CPU caching allocator to bound this; jemalloc or tcmalloc, preloaded, would do it too."""
    try:
        libc = ctypes.CDLL(None)
        trim, info = libc.malloc_trim, libc.mallinfo2
    except (OSError, AttributeError):
        return None
    info.restype = _MallInfo2

    def trim_when_large() -> None:
        if info().fordblks > limit:
            trim(0)

    return trim_when_large


class one_thread(contextlib.ContextDecorator):
    """Torch ops inside run on one intra-op thread, in the calling thread only (torch's thread count is per thread).

    On a CPU the pipeline's threads (reader, writer) share the cores with the network's intra-op pool: the light,
    memory-bound work around the forward pass (normalising, blending, the argmax) loses more waiting for a pool
    thread that another thread holds than it gains from a second core. Measured on 2 cores with a no-compute model:
    0.53 of bare reads with the pool, 0.58-0.61 with this (0.70-0.74 with the forward pass on one thread too, which
    would halve a real network's speed). Reusable; not re-entrant."""

    def __enter__(self) -> one_thread:
        self.before = torch.get_num_threads()
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.before)
