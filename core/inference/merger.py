"""Mergers: accumulate the weighted window outputs of one item and hand out its finished rows (MONAI's ``Merger``:
``aggregate`` then finalise). :class:`StripMerger` streams a 2D image through a ring buffer as tall as one tile;
:class:`VolumeMerger` accumulates an N-D item whole (MONAI ``sliding_window_inference``'s way), for items that fit in
memory and that no writer can take slab by slab (a 3D volume is resampled and reoriented as a whole).
:func:`make_merger` picks one for an item's shape."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

from segsuite.core.inference.windows import Box, Window


class Merger(ABC):
    """Accumulates the window outputs of one item, handing out finished rows as soon as no later window can touch
    them. Windows come in the grid's order; the engine calls :meth:`release` with a window's first row before it
    aggregates that window, and with the item's height at its end."""

    @abstractmethod
    def aggregate(self, values: torch.Tensor, window: Window | Box, weight: torch.Tensor) -> None:
        """Add ``values`` (K, h, w) with ``weight`` (h, w) at ``window`` (a box: (K, d, h, w), (d, h, w))."""

    @abstractmethod
    def release(self, upto: int) -> tuple[int, torch.Tensor, torch.Tensor] | None:
        """The next rows of [first held, ``upto``): (first row, blended (K, n, W), covered (n, W)), or None when there
        are none; called until None (a merger may hand out a long run of rows in several blocks)."""


class StripMerger(Merger):
    """Weighted accumulation for one image, holding ``buffer_rows`` rows in a preallocated ring buffer that is
    updated in place (no allocation per strip). Windows come in row-major order; :meth:`release` with a window's
    first row before aggregating it. Memory: (K + 1) x buffer_rows x width floats.

    The strip takes the layout of the first window's values: a network run channels-last (the predictor's default
    for 2D) hands out ``(K, h, w)`` with K innermost, and a strip stored the same way (``(rows, W, K)`` in memory,
    seen as ``(K, rows, W)``) blends each window without transposing it: 1.65 against 4.1 ms a window of 8 classes
    at 512 px on one CPU thread, the same values. Released blocks keep that layout.

    A released block holds at most :attr:`BLOCK_VALUES` floats: on the CPU, blocks over glibc's 32 MiB mmap threshold
    would be fresh pages (a page fault per 4 KiB) at every allocation, costing more than the blending itself; 4 MiB
    rather than 8 took 30 MiB off the peak at 8192 px wide (fewer and smaller blocks held by the writer, less heap
    fragmentation) at no measurable cost in speed.
    """

    BLOCK_VALUES = 1 << 20  # 4 MiB of float32

    def __init__(self, height: int, width: int, channels: int, buffer_rows: int, device: torch.device) -> None:
        self.height, self.width, self.rows, self.channels = height, width, buffer_rows, channels
        self.block_rows = max(1, self.BLOCK_VALUES // (channels * width))
        self.top = 0  # first row still held
        self._acc: torch.Tensor | None = None  # (K, rows, W), row r at r % rows; made by the first window
        self.wsum = torch.zeros(buffer_rows, width, device=device)  # (rows, W)

    @property
    def acc(self) -> torch.Tensor:
        """The strip ``(K, rows, W)``: channels-last when the first window's values were (:meth:`aggregate`)."""
        if self._acc is None:
            self._acc = torch.zeros(self.channels, self.rows, self.width, device=self.wsum.device)
        return self._acc

    def _place(self, values: torch.Tensor) -> None:
        """Make the strip in the layout of ``values`` (K, h, w): K innermost when they are (channels-last)."""
        if self._acc is None and values.dim() == 3 and values.stride(0) == 1 and values.shape[0] > 1:
            self._acc = torch.zeros(self.rows, self.width, self.channels, device=self.wsum.device).permute(2, 0, 1)

    def _spans(self, row: int, n: int) -> list[tuple[int, int, int]]:
        """(ring start, ring end, offset into the n rows) of rows [row, row + n), at most two pieces."""
        start = row % self.rows
        first = min(n, self.rows - start)
        spans = [(start, start + first, 0)]
        if first < n:
            spans.append((0, n - first, first))
        return spans

    def aggregate(self, values: torch.Tensor, window: Window, weight: torch.Tensor) -> None:
        r, c, h, w = window
        self._place(values)
        for a, b, off in self._spans(r, h):
            self.acc[:, a:b, c : c + w].addcmul_(values[:, off : off + b - a], weight[off : off + b - a])
            self.wsum[a:b, c : c + w] += weight[off : off + b - a]

    add = aggregate  # the earlier name

    def release(self, upto: int) -> tuple[int, torch.Tensor, torch.Tensor] | None:
        n = min(upto, self.height, self.top + self.block_rows) - self.top
        if n <= 0:
            return None
        acc = self.acc
        values = torch.empty_like(acc[:, :n])  # (K, n, W) in the strip's layout
        covered = torch.empty(n, self.width, dtype=torch.bool, device=acc.device)
        for a, b, off in self._spans(self.top, n):  # at most two pieces (the block wraps round the ring)
            torch.gt(self.wsum[a:b], 0, out=covered[off : off + b - a])
            torch.div(acc[:, a:b], self.wsum[a:b].clamp_min_(1e-12), out=values[:, off : off + b - a])
            acc[:, a:b].zero_()
            self.wsum[a:b].zero_()
        self.top += n
        return self.top - n, values, covered


class VolumeMerger(Merger):
    """Weighted accumulation over a whole N-D item on the predictor's device, handed out once at the end.

    It answers the same :class:`Merger` calls as the strip merger: :meth:`release` gives nothing until ``upto``
    reaches the last row (the engine asks that at an item's end), then every voxel.
    Memory: (K + 1) x the item's voxels floats.
    """

    def __init__(self, shape: Sequence[int], channels: int, device: torch.device) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.acc = torch.zeros(channels, *self.shape, device=device)  # (K, D, H, W)
        self.wsum = torch.zeros(self.shape, device=device)  # (D, H, W)
        self.done = False

    def aggregate(self, values: torch.Tensor, window: Box, weight: torch.Tensor) -> None:
        """Add ``values`` (K, d, h, w) with ``weight`` (d, h, w) at ``window``."""
        region = window.slices()
        self.acc[(slice(None), *region)].addcmul_(values, weight)
        self.wsum[region] += weight

    def release(self, upto: int) -> tuple[int, torch.Tensor, torch.Tensor] | None:
        """The whole item once ``upto`` reaches its end: (0, blended (K, D, H, W), covered (D, H, W)); else None."""
        if self.done or upto < self.shape[0]:
            return None
        self.done = True
        covered = self.wsum > 0
        return 0, self.acc.div_(self.wsum.clamp_min_(1e-12)), covered


def make_merger(shape: Sequence[int], channels: int, buffer_rows: int, device: torch.device) -> Merger:
    """The merger of an item of ``shape``: a :class:`StripMerger` of ``buffer_rows`` rows (at least a tile's height)
    for a 2D image (H, W), which streams; a :class:`VolumeMerger` for a volume (D, H, W), blended whole.

    The engine's ``merger`` argument: any callable of these arguments that returns a :class:`Merger`."""
    if len(shape) == 2:
        height, width = shape
        return StripMerger(height, width, channels, buffer_rows, device)
    return VolumeMerger(shape, channels, device)
