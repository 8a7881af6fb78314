"""Keeping the CPU's memory and cores to the forward pass: :func:`keep_heap` lets glibc reuse the memory a forward
pass frees instead of faulting it in afresh every batch, :func:`heap_trimmer` hands the free heap back where it is
not kept, :class:`one_thread` keeps the light work around the forward pass off torch's intra-op pool."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch

from segsuite.core.glibc import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, mallopt, set_by_user

KEPT = 2**31 - 1  # bytes: mallopt takes an int; allocations larger than this are still mmapped
KNOBS = ("trim_threshold", "mmap_threshold", "top_pad", "mmap_max")  # glibc's tunables of what keep_heap sets
_kept: bool | None = None  # this process's answer, once asked


def user_tuned(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment sets glibc's trim or mmap behaviour itself (``MALLOC_MMAP_THRESHOLD_``... or the
    same ``glibc.malloc.*`` tunables in ``GLIBC_TUNABLES``): the user's choice wins, as with ``GDAL_CACHEMAX``."""
    return set_by_user(KNOBS, environ)


def keep_heap() -> bool:
    """Have glibc keep freed memory for reuse (``mallopt``: no mmap below 2 GiB, no trim), once per process; whether
    the heap is now kept (False off glibc or when :func:`user_tuned`).

    PyTorch has no caching allocator on the CPU. With glibc's defaults a network's large activations (tens to
    hundreds of MiB) are mmapped when allocated and unmapped when freed, so every forward and backward pass faults
    them in again, a page at a time, zeroed by the kernel. Kept in the heap they are reused: measured on 2 cores,
    Unet-ResNet18, a forward pass of 8 tiles of 512 px 2.52 -> 1.80 s (3.2 M -> 0.37 M page faults), a training step
    of 8 x 256 px 2.22 -> 1.68 s; the land-cover pipeline 1.39x faster over a 4096^2 scene. The price is the heap's
    fragmentation, held instead of handed back: the peak grew by 270-360 MiB (15-18 %) over 2048^2 to 8192^2 scenes,
    flat in the scene's size. PyTorch's CPU tuning guide gets the same by preloading jemalloc or tcmalloc; this needs
    neither. Forked workers inherit the setting.

    It helps where the forward pass runs on the main thread (predict, evaluate, training). Other threads allocate
    from their own glibc arenas, whose heaps hold at most 64 MiB, so their larger blocks are still mapped afresh; a
    later ``mallopt(M_ARENA_MAX, 1)`` does not reliably bring them back to the main heap. Set before torch starts a
    thread it does: the ``segsuite`` command does so (:func:`segsuite.core.glibc.one_heap`; a forward pass in a thread,
    as the demo page's requests run: 2.35 -> 1.8 s), and in Python ``MALLOC_ARENA_MAX=1`` in the environment.
    ``MALLOC_ARENA_MAX`` is not one of the knobs that make :func:`user_tuned`."""
    global _kept
    if _kept is None:
        _kept = not user_tuned() and mallopt(M_MMAP_THRESHOLD, KEPT) and mallopt(M_TRIM_THRESHOLD, KEPT)
    return _kept


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_trimmer(limit: int = 64 << 20) -> Callable[[], Any] | None:
    """A function handing glibc's free heap memory back to the system (``malloc_trim``) once it exceeds ``limit``
    bytes (``mallinfo2().fordblks``); None where the C library is not glibc 2.33 or later, or where the heap is kept
    (:func:`keep_heap`: trimming would hand back what the next forward pass faults in again).

    glibc keeps freed heap memory for reuse, and a network's activations of many sizes (under its 32 MiB mmap
    threshold) freed between our row blocks leave it ever more fragmented: on the CPU the peak grew with the number
    of batches, 379 MiB added at 8192^2 against 288 MiB at 2048 x 8192 for Unet-ResNet18, and 245 MiB for both with
    every large allocation mmapped. Trimming before a forward pass once more than ``limit`` is free keeps it flat
    (323 and 305 MiB); trimming before every batch cost the light pipeline 8 % (its blocks fault back in), and a 32
    MiB limit trimmed on most batches of the no-compute model, whose blocks and tiles alone churn that much. PyTorch
    has no CPU caching allocator to bound this; jemalloc or tcmalloc, preloaded, would do it too. That was with
    glibc's default thresholds, which :func:`keep_heap` now replaces unless the user sets them."""
    if _kept:
        return None
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
