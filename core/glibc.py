"""glibc's malloc knobs (``mallopt``) set from Python, without importing torch (the ``segsuite`` command sets one
before torch starts a thread); a knob the environment sets is the user's, and left alone."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Mapping, Sequence

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # mallopt's parameters (malloc.h)


def set_by_user(names: Sequence[str], environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment sets any of glibc's malloc tunables ``names`` (``mmap_threshold``, ``arena_max``...):
    as its variable (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_ARENA_MAX``) or as ``glibc.malloc.<name>`` in
    ``GLIBC_TUNABLES``."""
    tunables = environ.get("GLIBC_TUNABLES", "")
    return any(environ.get("MALLOC_ARENA_MAX" if name == "arena_max" else f"MALLOC_{name.upper()}_")
               or f"glibc.malloc.{name}" in tunables for name in names)


def mallopt(param: int, value: int) -> bool:
    """glibc's ``mallopt(param, value)``; whether it took (False off glibc)."""
    with contextlib.suppress(OSError, AttributeError):
        return bool(ctypes.CDLL(None).mallopt(param, value))
    return False


def one_heap(environ: Mapping[str, str] = os.environ) -> bool:
    """Have every thread allocate from glibc's main heap (``M_ARENA_MAX`` 1), to be called before torch starts any
    thread: the heap that :func:`segsuite.core.inference.memory.keep_heap` keeps for reuse then serves a forward pass
    on any thread, as the demo page's requests run (2.35 -> 1.8 s a pass of Unet-ResNet18 on 2 cores; other threads'
    own arenas hold at most 64 MiB and map larger blocks afresh, and set later it no longer reaches them). Not where
    the environment sets the arena count. Whether it was set."""
    return not set_by_user(["arena_max"], environ) and mallopt(M_ARENA_MAX, 1)
