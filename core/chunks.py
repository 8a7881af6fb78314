"""Random training windows served chunk by chunk, so that one read of a large raster feeds many windows.

A random window of a large compressed raster decodes the file blocks under it, and with windows spread over a big
scene no block cache keeps those blocks for the next window: each window costs a few blocks' decoding. So (as
TorchGeo's ``RandomBatchGeoSampler`` draws a batch from one tile) :class:`ChunkSampler` picks a *chunk*, an area a
few of the file's blocks on a side, the caller reads it once, and it serves several random windows from it; a
shuffle buffer of a few chunks mixes their windows so that a batch does not all come from one place.

The windows stay uniform over all placements: a chunk owns the window corners in a block-aligned range (a
rectangle's chunks partition its placements) and its read area reaches one patch further; chunk ``i`` is picked
with probability proportional to ``weight_i / served_i`` and then serves ``served_i`` windows, so in the long run
every placement is equally likely (or, with weighted points, every point as its weight). Rectangles are
:class:`~segsuite.core.regions.Rect` s; the caller reads the areas (this module knows no file format).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from segsuite.core.regions import Rect

T = TypeVar("T")


@dataclass(frozen=True)
class Chunk:
    """Window corners ``corners`` (rows ``[r0, r1)`` x cols ``[c0, c1)``) of the caller's rectangle ``item``."""

    item: int
    corners: Rect

    @property
    def placements(self) -> int:
        return self.corners.area

    def area(self, patch: tuple[int, int]) -> Rect:
        """The pixels its windows of ``patch`` (h, w) can cover: what the caller reads."""
        c = self.corners
        return Rect(c.row0, c.col0, c.row1 - 1 + patch[0], c.col1 - 1 + patch[1])


def aligned_step(block: int, target: int) -> int:
    """A chunk side of about ``target`` px made of whole blocks of ``block`` px (``target`` if a block is larger)."""
    return block * max(1, target // block) if block <= target else target


def _cuts(lo: int, hi: int, step: int) -> list[int]:
    """``lo``, the multiples of ``step`` inside ``(lo, hi)``, and ``hi``."""
    return [lo, *range((lo // step + 1) * step, hi, step), hi]


def corner_range(rect: Rect, patch: tuple[int, int]) -> Rect:
    """Corners of the patch-sized windows inside ``rect`` (only its corner when ``rect`` is smaller than a patch)."""
    return Rect(rect.row0, rect.col0, rect.row0 + max(rect.height - patch[0], 0) + 1,
                rect.col0 + max(rect.width - patch[1], 0) + 1)


class ChunkSampler:
    """Windows of ``patch`` (h, w) inside ``rects``, drawn ``windows_per_chunk`` at a time from chunks of about
    ``steps[i]`` (rows, cols) px aligned to multiples of it, with a shuffle buffer of ``buffer`` chunks.

    Uniform over the placements, or (``points``: ``(rect index, row, col)`` window corners, ``weights`` their
    probabilities, e.g. cells with rare classes) near a point picked by weight: the corner jittered by up to half
    a patch, inside the point's chunk. The buffer and random generator belong to the process that draws: a forked
    DataLoader worker starts its own, seeded from ``seed``, the distributed rank, the worker id and torch's RNG
    (so it follows ``seed_everything``); pickling drops them.
    """

    def __init__(self, rects: Sequence[Rect], patch: tuple[int, int], steps: Sequence[tuple[int, int]],
                 windows_per_chunk: int = 32, buffer: int = 4, points: Sequence[tuple[int, int, int]] | None = None,
                 weights: Sequence[float] | None = None, seed: int = 0) -> None:
        if windows_per_chunk < 1 or buffer < 1:
            raise ValueError(f"windows_per_chunk and buffer must be >= 1; got {windows_per_chunk}, {buffer}")
        self.patch, self.seed, self.buffer = (int(patch[0]), int(patch[1])), int(seed), int(buffer)
        grids = []  # per rect: row cuts, col cuts of its corner range
        self.chunks: list[Chunk] = []
        for i, (rect, step) in enumerate(zip(rects, steps, strict=True)):
            corners = corner_range(rect, self.patch)
            rows, cols = _cuts(corners.row0, corners.row1, step[0]), _cuts(corners.col0, corners.col1, step[1])
            grids.append((len(self.chunks), rows, cols))
            self.chunks += [Chunk(i, Rect(a, c, b, d)) for a, b in zip(rows, rows[1:]) for c, d in zip(cols, cols[1:])]
        placements = np.array([c.placements for c in self.chunks], float)
        self.served = np.minimum(windows_per_chunk, placements).astype(int)
        self.points: list[np.ndarray] = [np.zeros((0, 3))] * len(self.chunks)  # per chunk: (row, col, weight)
        if points is None:
            weight = placements
        else:
            weight, owner = np.zeros(len(self.chunks)), np.array([_owner(grids[i], r, c) for i, r, c in points], int)
            table = np.array([(r, c, w) for (_, r, c), w in zip(points, weights, strict=True)], float).reshape(-1, 3)
            owner, table = owner[table[:, 2] > 0], table[table[:, 2] > 0]
            np.add.at(weight, owner, table[:, 2])
            for k in np.unique(owner):  # weights within a chunk, as probabilities
                self.points[k] = table[owner == k] / [1, 1, weight[k]]
        if weight.sum() <= 0:
            raise ValueError("no chunk has a positive weight")
        self.p = weight / self.served / (weight / self.served).sum()
        self._state: tuple[int, np.random.Generator, list[list[Any]]] | None = None

    @property
    def rng(self) -> np.random.Generator:
        """This process's random generator (e.g. for augmenting the windows drawn)."""
        return self._process()[0]

    def draw(self, read: Callable[[Chunk], T]) -> tuple[Chunk, T, Rect]:
        """``(chunk, read(chunk), window)``: ``read`` is called when a chunk enters the buffer (not if it is in it
        already), to read the pixels of :meth:`Chunk.area`."""
        rng, slots = self._process()
        while len(slots) < self.buffer:  # slots: [chunk index, its data, windows left]
            k = int(rng.choice(len(self.chunks), p=self.p))
            held = next((slot[1] for slot in slots if slot[0] == k), None)  # a chunk drawn again while buffered
            slots.append([k, read(self.chunks[k]) if held is None else held, int(self.served[k])])
        i = int(rng.integers(len(slots)))
        slot = slots[i]
        slot[2] -= 1
        if slot[2] == 0:
            slots.pop(i)
        return self.chunks[slot[0]], slot[1], self._window(self.chunks[slot[0]], self.points[slot[0]], rng)

    def _process(self) -> tuple[np.random.Generator, list[list[Any]]]:
        if self._state is None or self._state[0] != os.getpid():  # first draw here, or a forked worker's
            self._state = os.getpid(), np.random.default_rng(self._seeds()), []
        return self._state[1], self._state[2]

    def _window(self, chunk: Chunk, points: np.ndarray, rng: np.random.Generator) -> Rect:
        r0, c0, r1, c1 = chunk.corners.row0, chunk.corners.col0, chunk.corners.row1, chunk.corners.col1
        if len(points):
            row, col, _ = points[rng.choice(len(points), p=points[:, 2])]
            half = self.patch[0] // 2, self.patch[1] // 2
            lo_r, hi_r = (min(max(int(row) + d, r0), r1 - 1) for d in (-half[0], half[0]))
            lo_c, hi_c = (min(max(int(col) + d, c0), c1 - 1) for d in (-half[1], half[1]))
            r, c = int(rng.integers(lo_r, hi_r + 1)), int(rng.integers(lo_c, hi_c + 1))
        else:
            r, c = int(rng.integers(r0, r1)), int(rng.integers(c0, c1))
        return Rect(r, c, r + self.patch[0], c + self.patch[1])

    def _seeds(self) -> list[int]:
        rank = torch.distributed.get_rank() if torch.distributed.is_available() and \
            torch.distributed.is_initialized() else 0
        worker = torch.utils.data.get_worker_info()
        return [self.seed, rank, 0 if worker is None else worker.id + 1, int(torch.randint(0, 2**31 - 1, ()))]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_state": None}


def _owner(grid: tuple[int, list[int], list[int]], row: int, col: int) -> int:
    """Index of the chunk (of one rect's ``grid``) whose corners hold ``(row, col)``, clamped into the range."""
    first, rows, cols = grid
    i = min(max(int(np.searchsorted(rows, row, side="right")) - 1, 0), len(rows) - 2)
    j = min(max(int(np.searchsorted(cols, col, side="right")) - 1, 0), len(cols) - 2)
    return first + i * (len(cols) - 1) + j
