"""Thread pools for the work beside the forward pass (encoding a prediction's files, decoding the next inputs:
:class:`Prefetch`).

On a CPU the forward pass uses every core torch was given, and its threads wait for each other at every layer: a
side thread that takes one of their cores slows the whole layer, not just one thread. So side work runs in threads
of lower priority (Linux: nice 10 for those threads only), which take the cores while the network leaves them idle
(between layers and batches, while the engine splits and restores a block) and give them back at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

SIDE_NICE = 10  # the side threads' nice value (0: equal to the forward pass)


def cores(most: int) -> int:
    """The CPU cores, at least 1, at most ``most``."""
    return max(1, min(most, os.cpu_count() or 1))


def settle_threads() -> int:
    """Fix the calling thread's torch thread count (returned) before it starts side threads that set their own.

    torch keeps a count per thread but gives a thread, when it first computes in parallel, the count last set in
    *any* thread: in a fresh process, a side thread's ``set_num_threads(1)`` made before the engine's thread had
    computed anything left the forward pass on one thread of two."""
    return torch.get_num_threads()


def thread_map(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[fn(item) for item in items]``, the items side by side on up to a core each: for work that releases the
    GIL (numpy's copies, partitions and ufuncs, zlib), before the forward pass has the cores."""
    with ThreadPoolExecutor(cores(len(items))) as pool:
        return list(pool.map(fn, items))


def side_pool(workers: int, name: str, nice: int | None = None) -> ThreadPoolExecutor:
    """A pool of ``workers`` threads named ``name-N`` at the lower priority ``nice`` (default :data:`SIDE_NICE`)
    where the system allows it, each with one torch thread."""
    settle_threads()
    return ThreadPoolExecutor(workers, thread_name_prefix=name, initializer=_side_thread,
                              initargs=(SIDE_NICE if nice is None else nice,))


def _side_thread(nice: int) -> None:
    torch.set_num_threads(1)  # torch calls in this thread (interpolation, argmax) stay off the forward's pool
    with contextlib.suppress(AttributeError, OSError):  # Linux: a thread's own nice value; elsewhere as it is
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


@dataclass
class Prefetch:
    """Inputs loaded ahead of their use in a :func:`side_pool` of ``workers`` threads: :meth:`expect` lists the keys
    (input paths) in the order they will be asked for, :meth:`get` returns ``load(key)`` and starts loading the
    ``ahead`` keys after it."""

    workers: int
    ahead: int
    name: str = "prefetch"
    order: list[Hashable] = field(default_factory=list)
    position: dict[Hashable, int] = field(default_factory=dict)
    pending: dict[Hashable, Future] = field(default_factory=dict)
    pool: ThreadPoolExecutor | None = None

    def expect(self, key: Hashable) -> None:
        self.position.setdefault(key, len(self.order))
        self.order.append(key)

    def get(self, key: Hashable, load: Callable[[Hashable], Any]) -> Any:
        self.pool = self.pool or side_pool(self.workers, self.name)
        start = self.position.get(key, len(self.order)) + 1
        for nxt in [key, *self.order[start: start + self.ahead]]:
            if nxt not in self.pending:
                self.pending[nxt] = self.pool.submit(load, nxt)
        return self.pending.pop(key).result()
