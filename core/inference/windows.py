"""Tiling geometry: which windows cover an image (2D :class:`Window`) or a volume (N-D :class:`Box`). No I/O, no
tensors."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

from segsuite.core.errors import ConfigError


class Window(NamedTuple):
    """A rectangle of pixels: top row, left column, height, width."""

    row: int
    col: int
    height: int
    width: int


def _starts(size: int, tile: int, stride: int) -> list[int]:
    """Tile origins along one axis; the last tile is shifted inward so it ends exactly at the edge."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def grid_windows(height: int, width: int, tile: tuple[int, int], overlap: tuple[int, int]) -> list[Window]:
    """Windows of size ``tile`` (or the image size, if smaller) covering every pixel, in row-major order.

    Args:
        height, width: image size in pixels.
        tile: (tile_h, tile_w).
        overlap: pixels shared by neighbouring tiles along (rows, cols); must be smaller than the tile.
    """
    (th, tw), (oh, ow) = tile, overlap
    if not (0 <= oh < th and 0 <= ow < tw):
        raise ValueError(f"overlap {overlap} must be >= 0 and smaller than the tile {tile}")
    h, w = min(th, height), min(tw, width)
    return [
        Window(r, c, h, w)
        for r in _starts(height, th, th - oh)
        for c in _starts(width, tw, tw - ow)
    ]


class Box(NamedTuple):
    """An N-D block of voxels: its first voxel and its size per axis, e.g. ``(d, h, w)`` for a volume."""

    start: tuple[int, ...]
    size: tuple[int, ...]

    @property
    def row(self) -> int:
        """The start along the first axis (what a merger's ``release`` is given, as for a :class:`Window`)."""
        return self.start[0]

    def slices(self) -> tuple[slice, ...]:
        """Index of the box's voxels in an array of the item's shape (prefix ``slice(None)`` for channels)."""
        return tuple(slice(s, s + n) for s, n in zip(self.start, self.size))


def grid_boxes(shape: Sequence[int], tile: Sequence[int], overlap: Sequence[int]) -> list[Box]:
    """Boxes of size ``tile`` (or the shape, where smaller) covering every voxel of ``shape``, in C order; along
    each axis the last box is shifted inward to end at the edge, as :func:`grid_windows` does in 2D.

    Args:
        shape: the item's size per axis, e.g. (D, H, W).
        tile, overlap: box size and voxels shared by neighbouring boxes per axis; overlap >= 0 and < tile.
    """
    if not len(shape) == len(tile) == len(overlap):
        raise ValueError(f"shape {tuple(shape)}, tile {tuple(tile)} and overlap {tuple(overlap)} differ in length")
    if not all(0 <= o < t for o, t in zip(overlap, tile)):
        raise ValueError(f"overlap {tuple(overlap)} must be >= 0 and smaller than the tile {tuple(tile)}")
    size = tuple(min(t, n) for t, n in zip(tile, shape))
    axes = [_starts(n, t, t - o) for n, t, o in zip(shape, tile, overlap)]
    return [Box(tuple(start), size) for start in itertools.product(*axes)]


def grid_for(shape: Sequence[int], tile: Sequence[int], overlap: Sequence[int]) -> list[Window] | list[Box]:
    """The windows of an item of ``shape``: :class:`Window` s for 2D images, :class:`Box` es for 3D volumes.

    Raises:
        ConfigError: when ``tile`` has not one value per axis of the item (a [d, h, w] tile on a 2D image...).
    """
    if len(tile) != len(shape):
        wanted = "[h, w]" if len(shape) == 2 else "[d, h, w]"
        raise ConfigError(f"tile={list(tile)} has {len(tile)} values but the item is {len(shape)}D "
                          f"{tuple(shape)}: give {wanted}")
    if len(shape) == 2:
        return grid_windows(*shape, tuple(tile), tuple(overlap))
    return grid_boxes(shape, tile, overlap)


def window_size(window: Window | Box) -> tuple[int, ...]:
    """The spatial size of a window: ``(h, w)`` or a box's ``size``."""
    return window.size if isinstance(window, Box) else (window.height, window.width)


class Band(NamedTuple):
    """A column band of an image: the output columns ``[col0, col1)`` it hands out and the windows of the image's
    grid that touch them, which span the columns ``[left, right)`` (the band's merger width)."""

    col0: int
    col1: int
    left: int
    right: int
    windows: list[Window]


def grid_bands(height: int, width: int, tile: tuple[int, int], overlap: tuple[int, int],
               band: int | None) -> list[Band]:
    """The image's grid (:func:`grid_windows`) split into column bands ``band`` px wide (None: one band, the full
    width). A window crossing a band edge belongs to both bands and is computed twice; each pixel is blended from
    the same windows in the same order as in one full-width pass, so the result is the same."""
    grid = grid_windows(height, width, tile, overlap)
    if band is None or band >= width:
        return [Band(0, width, 0, width, grid)]
    bands = []
    for col0 in range(0, width, band):
        col1 = min(col0 + band, width)
        windows = [w for w in grid if w.col < col1 and w.col + w.width > col0]
        bands.append(Band(col0, col1, min(w.col for w in windows), max(w.col + w.width for w in windows), windows))
    return bands
