"""Where 2D samples come from, for any domain whose items are large images: pixel rectangles, spatial hold-out
(a strip or seeded blocks, so that neighbours never leak), validation grids and rare-class weights (random training
windows: :class:`segsuite.core.chunks.ChunkSampler`).

Rectangles are half-open pixel ranges, windows are rectangles too (a domain turns them into its reader's windows).
A window may be larger than the rectangle it is drawn for (a tile smaller than the patch); pixels outside the
rectangle are then masked out by the dataset.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from segsuite.core.errors import ConfigError

HOLDOUT_MODES = ("strip", "blocks")


@dataclass(frozen=True)
class Rect:
    """Pixel rectangle ``[row0, row1) x [col0, col1)``."""

    row0: int
    col0: int
    row1: int
    col1: int

    @property
    def height(self) -> int:
        return self.row1 - self.row0

    @property
    def width(self) -> int:
        return self.col1 - self.col0

    @property
    def area(self) -> int:
        return self.height * self.width

    def overlaps(self, other: Rect) -> bool:
        return self.row0 < other.row1 and other.row0 < self.row1 and self.col0 < other.col1 and other.col0 < self.col1


def full_rect(height: int, width: int) -> Rect:
    return Rect(0, 0, height, width)


def _grid_axis(start: int, stop: int, size: int) -> list[tuple[int, int, int]]:
    """Per step along one axis: (window start, owned start, owned stop); the last window is shifted back to
    end at ``stop`` when the range is at least ``size`` long, so edge windows keep real context."""
    out = []
    for own0 in range(start, stop, size):
        own1 = min(own0 + size, stop)
        out.append((own0 if own0 + size <= stop else max(start, stop - size), own0, own1))
    return out


def grid_rects(rect: Rect, patch: tuple[int, int]) -> list[tuple[Rect, Rect]]:
    """Patch-sized windows over ``rect`` and the part each one owns; owned parts tile ``rect`` exactly once
    (edges included), so metrics count every pixel once. Windows never leave ``rect`` unless it is smaller
    than the patch."""
    ph, pw = patch
    return [
        (Rect(wr, wc, wr + ph, wc + pw), Rect(r0, c0, r1, c1))
        for wr, r0, r1 in _grid_axis(rect.row0, rect.row1, ph)
        for wc, c0, c1 in _grid_axis(rect.col0, rect.col1, pw)
    ]


def cells(rect: Rect, size: tuple[int, int]) -> list[Rect]:
    """Non-overlapping cells of ``size`` tiling ``rect`` (clipped at its edges)."""
    return [
        Rect(r, c, min(r + size[0], rect.row1), min(c + size[1], rect.col1))
        for r in range(rect.row0, rect.row1, size[0])
        for c in range(rect.col0, rect.col1, size[1])
    ]


def holdout_split(
    height: int, width: int, fraction: float, mode: str = "strip", block: int = 1024, seed: int = 0
) -> tuple[list[Rect], list[Rect]]:
    """Split a scene spatially into (train rects, val rects) that do not overlap.

    ``strip``: the last ``fraction`` of the longer axis (right columns of a wide scene, bottom rows of a tall
    one). ``blocks``: square blocks of ``block`` pixels, a seeded random ``fraction`` of them held out; the
    train part is returned as horizontal runs of neighbouring train blocks.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"holdout_fraction must be in (0, 1); got {fraction}")
    if mode == "strip":
        return _strip_split(height, width, fraction)
    if mode == "blocks":
        return _block_split(height, width, fraction, block, seed)
    raise ConfigError(f"holdout_mode must be one of {HOLDOUT_MODES}; got {mode!r}")


def _strip_split(height: int, width: int, fraction: float) -> tuple[list[Rect], list[Rect]]:
    length = max(height, width)
    if length < 2:
        raise ConfigError(f"a {height}x{width} scene is too small for a spatial hold-out")
    cut = min(max(length - round(fraction * length), 1), length - 1)
    if width >= height:
        return [Rect(0, 0, height, cut)], [Rect(0, cut, height, width)]
    return [Rect(0, 0, cut, width)], [Rect(cut, 0, height, width)]


def blocks(height: int, width: int, block: int) -> list[list[Rect]]:
    """Rows of blocks of about ``block`` px tiling a scene, edges spread evenly (no thin sliver at the scene edge)."""
    rows, cols = (np.linspace(0, n, max(1, round(n / block)) + 1).astype(int).tolist() for n in (height, width))
    return [[Rect(r0, c0, r1, c1) for c0, c1 in zip(cols, cols[1:])] for r0, r1 in zip(rows, rows[1:])]


def _block_split(height: int, width: int, fraction: float, block: int, seed: int) -> tuple[list[Rect], list[Rect]]:
    grid = blocks(height, width, block)
    n = len(grid) * len(grid[0])
    if n < 2:
        raise ConfigError(f"holdout_block={block} gives one block for a {height}x{width} scene; use a smaller block")
    held = np.zeros(n, bool)
    held[np.random.default_rng(seed).choice(n, min(max(round(fraction * n), 1), n - 1), replace=False)] = True
    val, train = [], []
    for row, marks in zip(grid, held.reshape(len(grid), -1)):
        j = 0
        for is_held, run in itertools.groupby(marks.tolist()):
            k = j + len(list(run))
            if is_held:
                val += row[j:k]
            else:  # a run of neighbouring train blocks as one rect, so training windows can span them
                train.append(Rect(row[j].row0, row[j].col0, row[k - 1].row1, row[k - 1].col1))
            j = k
    return train, val


def repeat_factor_weights(presence: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Sampling weights for cells from a ``(n_cells, n_classes)`` class-presence matrix, after LVIS repeat-factor
    sampling: class factor ``max(1, sqrt(threshold / f_c))`` with ``f_c`` the fraction of cells containing class
    ``c``; a cell's weight is the largest factor among its classes (0 for a cell without labelled pixels).
    Returns probabilities summing to 1."""
    presence = np.asarray(presence, bool)
    freq = presence.mean(axis=0)
    factor = np.where(freq > 0, np.maximum(1.0, np.sqrt(threshold / np.maximum(freq, 1e-12))), 0.0)
    weights = (presence * factor).max(axis=1) if presence.size else np.zeros(len(presence))
    if weights.sum() <= 0:
        raise ConfigError("rare-class weighting found no labelled pixels in the training windows")
    return weights / weights.sum()
