"""Feeding the model: a producer thread reads the windows of every source, in order, with a pool of reader threads
(one file handle each, reads at most ``2 x readers`` windows ahead) and puts batches of tiles on a queue of one
(:class:`~segsuite.core.inference.batch.Batch`: tiles with equal shape, dtype and normalizer share a batch)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from segsuite.core.inference.batch import Batch, HostBuffers
from segsuite.core.inference.sources import Source
from segsuite.core.inference.windows import Window

END = object()  # what the producer puts on the queue after the last batch


class _Stopped(Exception):
    """The consumer stopped listening."""


def _load(source: Source, window: Window) -> tuple[np.ndarray | None, np.ndarray | None]:
    """One window in a reader thread: ``(data, valid)`` of a :class:`RawSource`; model-ready float32 and None for a
    plain :class:`Source`; ``(None, None)`` for a window to skip."""
    if hasattr(source, "load"):  # a RawSource (an attribute test: isinstance on a Protocol is slow per window)
        data, valid = source.load(window)
        return (data, valid) if valid.any() else (None, None)
    if source.skip(window):
        return None, None
    return np.ascontiguousarray(source.read(window), dtype=np.float32), None


def _windows(parts: Sequence[tuple[Any, Source, Sequence[Window]]]) -> Iterator[tuple[Any, Source, Window | None]]:
    """``(part key, source, window)`` in order; the window is None at each part's end."""
    for key, source, windows in parts:
        for window in windows:
            yield key, source, window
        yield key, source, None


def produce(parts: Sequence[tuple[Any, Source, Sequence[Window]]], batch_size: int, readers: int,
            device: torch.device, out: queue.Queue, stop: threading.Event) -> None:
    """Background thread: read the windows of every part ``(key, source, windows)`` (a source, or a column band of
    one) with ``readers`` threads, in order, and put batches ``(items, Batch or None)`` on ``out``. ``items`` lists
    ``(key, source, window, computed)``; a window is None at a part's end. Reads run ahead of the batch being filled
    by at most ``2 x readers`` windows."""
    def put(value) -> None:
        while not stop.is_set():  # give up when the consumer has gone
            try:
                return out.put(value, timeout=0.1)
            except queue.Full:
                continue
        raise _Stopped

    pool = ThreadPoolExecutor(readers, thread_name_prefix="segsuite-read", initializer=torch.set_num_threads,
                              initargs=(1,))  # in those threads only (one_thread)
    try:
        stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        buffers = HostBuffers(device)
        items: list = []
        batch: Batch | None = None
        key: tuple | None = None  # what the tiles of the batch being filled share: shape, dtype, normalizer

        def flush() -> None:
            nonlocal batch
            put((list(items), batch.send(device, stream) if batch is not None else None))
            items.clear()
            batch = None

        def take(entry, future) -> None:
            nonlocal key, batch
            index, source, window = entry
            if window is None:
                items.append((index, source, None, False))
                return
            data, valid = future.result()
            if data is None:
                items.append((index, source, window, False))
                return
            normalizer = source.normalizer if valid is not None else None
            tile_key = (data.shape, data.dtype, normalizer)
            if batch is not None and tile_key != key:
                flush()
            key = tile_key
            if batch is None:
                batch = Batch(buffers, batch_size, data, valid is not None, normalizer)
            items.append((index, source, window, True))
            batch.add(data, valid)
            if batch.n == batch_size:
                flush()

        pending: deque = deque()
        for entry in _windows(parts):
            future = pool.submit(_load, entry[1], entry[2]) if entry[2] is not None else None
            pending.append((entry, future))
            while len(pending) > 2 * readers:
                take(*pending.popleft())
            if stop.is_set():
                raise _Stopped
        while pending:
            take(*pending.popleft())
        flush()
        put(END)
    except _Stopped:
        pass
    except BaseException as err:  # re-raised in the consuming thread (unless it has gone: never block on it)
        with contextlib.suppress(_Stopped):
            put(err)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
