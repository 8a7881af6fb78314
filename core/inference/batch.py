"""Batches of tiles on their way to the model: filled tile by tile in reused host arrays (pinned on CUDA; no
allocation, no stacking copy), copied to the device (on CUDA on a side stream, overlapping the previous forward pass)
and normalised there into a reused float32 buffer (channels-last for 2D networks that run so).

Memory (README, "Prediction streams"): about ``2 x readers + 2 x batch_size`` tiles in the file's dtype and one
normalised float32 batch.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


class HostBuffers:
    """Reused host arrays for batches of tiles (pinned on CUDA): a batch is filled tile by tile as reads complete and
    its arrays come back (:meth:`Batch.release`) once the batch is on the device or through the model, so batches
    cost no allocation (fresh pages fault in one by one on a CPU; pinned allocation is slow on CUDA) and no
    stacking copy."""

    def __init__(self, device: torch.device) -> None:
        self.pinned = device.type == "cuda"
        self.free: dict[tuple, list[torch.Tensor]] = {}
        self.lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        with self.lock:
            free = self.free.get((shape, dtype))
            if free:
                return free.pop()
        return torch.empty(shape, dtype=dtype, pin_memory=self.pinned)

    def give(self, array: torch.Tensor) -> None:
        with self.lock:
            self.free.setdefault((tuple(array.shape), array.dtype), []).append(array)


class Batch:
    """Tiles stacked for the model, with their valid masks (None when the source has none) and the normalizer that
    makes them model-ready on the device. Tiles are copied into reused host arrays as they arrive (:meth:`add`); on
    CUDA those are pinned and the batch is copied on a side stream by the reading thread, so the copy overlaps the
    previous batch's forward pass."""

    def __init__(self, pool: HostBuffers, size: int, tile: np.ndarray, masked: bool, normalizer: Any) -> None:
        self.pool, self.normalizer, self.event, self.n = pool, normalizer, None, 0
        dtype = torch.from_numpy(tile[:0]).dtype
        self.host = [pool.take((size, *tile.shape), dtype)] + ([pool.take((size, *tile.shape[1:]), torch.bool)]
                                                               if masked else [])

    def add(self, tile: np.ndarray, valid: np.ndarray | None) -> None:
        self.host[0][self.n].numpy()[...] = tile
        if valid is not None:
            self.host[1][self.n].numpy()[...] = valid
        self.n += 1

    def send(self, device: torch.device, stream) -> Batch:
        """The filled tiles on ``device`` (on CUDA, copied on ``stream``); returns self."""
        host = [h[: self.n] for h in self.host]
        if device.type != "cuda":
            self.tensors = host
            return self
        with torch.cuda.stream(stream):
            self.tensors = [h.to(device, non_blocking=True) for h in host]
            self.event = torch.cuda.Event()
            self.event.record(stream)
        return self

    def release(self, tiles_only: bool = False) -> None:
        """Give the host arrays back for later batches, once the copy to the device is done or, on the CPU, once
        nothing reads them: the tiles after normalising (``tiles_only``), the masks after blending."""
        if self.event is not None:
            self.event.synchronize()
        for i in range(1 if tiles_only else len(self.host)):
            if self.host[i] is not None:
                self.pool.give(self.host[i])
                self.host[i] = None

    def ready(self, buffers: dict, layout: torch.memory_format = torch.contiguous_format
              ) -> tuple[torch.Tensor, list[torch.Tensor | None] | None]:
        """``(model-ready float32 batch, each tile's valid mask (None: all valid, :func:`_partly_valid`) or None for
        sources without masks)``, safe to use on the current stream. The
        normalised batch goes into ``buffers`` (float32 tensors per shape, reused: the next batch is normalised only
        after this one's forward pass was issued, in the same stream), in ``layout`` for 2D batches (the predictor's
        channels-last). Tiles are normalised one by one in the file's layout and copied across: per-band arithmetic
        broadcast over channels-last's innermost axis runs about 2x slower on a CPU than that."""
        if self.event is not None:
            current = torch.cuda.current_stream(self.tensors[0].device)
            current.wait_event(self.event)
            for t in self.tensors:
                t.record_stream(current)
        x, valid = self.tensors[0], (self.tensors[1] if len(self.tensors) > 1 else None)
        masks = _partly_valid(valid) if valid is not None else None
        if masks is not None and all(m is None for m in masks):
            valid = None  # the normalizer need not fill nodata
        if self.normalizer is None:
            return x.float(), masks
        if x.dim() != 4 or layout == torch.contiguous_format:
            out = self.normalizer(x, valid, _buffer(buffers, x.shape, x.device))
        else:
            out, one = _buffer(buffers, x.shape, x.device, layout), _buffer(buffers, (1, *x.shape[1:]), x.device)
            for i in range(len(x)):  # tile by tile through a small buffer in the file's layout
                out[i : i + 1].copy_(self.normalizer(x[i : i + 1], None if valid is None else valid[i : i + 1], one))
        self.release(tiles_only=True)  # free for the batch after next while this one runs
        return out, masks


def _buffer(buffers: dict, shape: Sequence[int], device: torch.device,
            layout: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """A reused float32 tensor of ``shape`` in ``layout``."""
    key = (tuple(shape), device, layout)
    if key not in buffers:
        buffers[key] = torch.empty(tuple(shape), dtype=torch.float32, device=device, memory_format=layout)
    return buffers[key]


def _partly_valid(valid: torch.Tensor) -> list[torch.Tensor | None]:
    """Each tile's valid mask, or None where the whole tile is valid (its weights need no masking). On a GPU every
    mask is kept: asking which are full would wait for the device."""
    if valid.device.type != "cpu":
        return list(valid)
    return [None if full else mask for mask, full in zip(valid, valid.flatten(1).all(1).tolist())]
