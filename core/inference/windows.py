"""Tiling geometry: which windows cover an image. No I/O, no tensors."""

from __future__ import annotations

from typing import NamedTuple


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
