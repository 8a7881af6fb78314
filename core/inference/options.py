"""How the engine tiles an item (:class:`InferenceOptions`, checked once where it is made and passed through) and
how many threads read tiles when that is not configured (:func:`default_readers`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from segsuite.core.errors import ConfigError
from segsuite.core.inference.blend import BLEND_MODES
from segsuite.core.workers import cores


@dataclass(frozen=True)
class InferenceOptions:
    """How the engine tiles an item, checked once for every domain (a ConfigError names the bad value).

    Args:
        tile: window size ``[h, w]`` in model-input pixels (``[d, h, w]`` for 3D items), or None for whole items
            (one window each).
        overlap: pixels shared by neighbouring windows, one per axis of the tile; each must be >= 0 and smaller
            than the tile.
        batch_size: windows per forward pass (>= 1).
        blend: how overlapping windows are weighted: gaussian, cosine or constant.
        readers: threads reading tiles (each with its own file handle); None: :func:`default_readers`.
        band: column band width in px for wide 2D images (:func:`~.windows.grid_bands`): None, full width;
            ``"auto"``, full width while the merger's strip fits :data:`STRIP_BUDGET`, else the fewest bands that fit
            it, all as wide; or a whole number. Bands equal the full-width result; windows on a band edge are
            computed twice.
    """

    tile: tuple[int, ...] | None = (512, 512)
    overlap: tuple[int, ...] = (64, 64)
    batch_size: int = 8
    blend: str = "gaussian"
    readers: int | None = None
    band: int | str | None = None

    def __post_init__(self) -> None:
        tile = None if self.tile is None else _pair("tile", self.tile, minimum=1)
        overlap = _pair("overlap", self.overlap, minimum=0)
        if tile is not None and len(overlap) != len(tile):
            raise ConfigError(f"overlap={list(overlap)} must have one value per axis of tile={list(tile)}")
        if tile is not None and not all(o < t for o, t in zip(overlap, tile)):
            raise ConfigError(f"overlap={list(overlap)} must be smaller than tile={list(tile)} along each axis")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size!r}: expected a whole number >= 1")
        if self.readers is not None and (isinstance(self.readers, bool) or not isinstance(self.readers, int)
                                         or self.readers < 1):
            raise ConfigError(f"readers={self.readers!r}: expected a whole number >= 1 (reader threads) or null")
        if self.band is not None and self.band != "auto" and (isinstance(self.band, bool) or not isinstance(
                self.band, int) or self.band < 1):
            raise ConfigError(f"band={self.band!r}: expected auto, null (full width) or a whole number of px >= 1")
        if self.blend not in BLEND_MODES:
            raise ConfigError(f"blend={self.blend!r}: choose one of {', '.join(BLEND_MODES)}")
        object.__setattr__(self, "tile", tile)
        object.__setattr__(self, "overlap", overlap)

    def grid(self, shape: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(tile, overlap) for an item of ``shape``: whole items get one window."""
        if self.tile is None:
            return tuple(int(n) for n in shape), (0,) * len(shape)
        return self.tile, self.overlap


    def band_width(self, shape: Sequence[int], channels: int, tile_h: int) -> int | None:
        """Column band width for a 2D image of ``shape`` blended into ``channels`` channels through windows
        ``tile_h`` rows tall: None for the full width (volumes, ``band`` None, or an auto strip that fits).

        ``auto`` cuts the width into the fewest bands whose strips fit :data:`STRIP_BUDGET`, all about as wide
        (multiples of :data:`BAND_STEP`): a window crossing a band edge is computed once per band, so every band
        saved is a column of windows not computed twice, and equal bands keep the widest strip, which sets the
        memory, as narrow as that number of bands allows (8192 px at the budget's widest 4096: two bands of 4096,
        not 4096 + 4096 + a sliver)."""
        if len(shape) != 2 or self.band is None:
            return None
        width = int(shape[1])
        if self.band != "auto":
            return int(self.band) if self.band < width else None
        per_col = 4 * (channels + 1) * min(tile_h, shape[0])  # bytes of the merger's strip per column
        if per_col * width <= STRIP_BUDGET:
            return None
        margin = 2 * (self.tile[1] if self.tile else 0)  # windows reach past a band's edges on both sides
        widest = max(BAND_STEP, (STRIP_BUDGET // per_col - margin) // BAND_STEP * BAND_STEP)
        bands = -(-width // widest)
        return -(-width // (bands * BAND_STEP)) * BAND_STEP

    def reread_pixels(self, shape: Sequence[int], channels: int, block_rows: int, device: torch.device | str) -> int:
        """Input pixels a block cache must hold so that no file block is decoded twice while the engine goes through
        a 2D image of ``shape`` stored in blocks ``block_rows`` tall, blended into ``channels`` channels: a window row
        and a block row, across the widest span read at once (a band and the windows reaching past its edges, or
        the full width), per reader thread (each reads through its own handle and keeps its own blocks)."""
        if self.tile is None or len(shape) != 2:
            return 0  # whole items: each read once
        band = self.band_width(shape, channels, self.tile[0])
        span = shape[1] if band is None else min(shape[1], band + 2 * self.tile[1])
        return (self.readers or default_readers(device)) * (min(self.tile[0], shape[0]) + block_rows) * span


# bytes: band=auto keeps the merger's strip ((K + 1) x tile_h x width float32) under this. 96 MiB lets a 4096 px wide
# scene (8 classes, 512 px tiles: 72 MiB) through whole: at 64 MiB it went in two bands and computed a column of
# windows twice, 90 windows for 81 (the pipeline 0.90 of the bare forward against 0.95 whole, 2 CPU cores).
STRIP_BUDGET = 96 << 20
BAND_STEP = 512  # auto bands are a multiple of the output rasters' 512 px blocks: writes fill whole blocks


def _pair(name: str, value: Any, minimum: int) -> tuple[int, ...]:
    """``[h, w]`` for images, or ``[d, h, w]`` for volumes, checked (the 2D message names the 2D form)."""
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) not in (2, 3) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum
                                          for v in pair):
        raise ConfigError(f"{name}={value!r}: expected [h, w], two whole numbers >= {minimum} ([d, h, w] for "
                          f"volumes)")
    return tuple(int(v) for v in pair)


def default_readers(device: torch.device | str) -> int:
    """Reader threads when not configured: one when the model runs on the CPU, else up to 4 (at most the cores).

    Each thread decodes the file's blocks through its own handle and cache, and neighbouring windows share blocks,
    so a second thread decodes many blocks again: on the CPU it takes cores from the model (measured on 2 cores: the
    no-compute pipeline ran 1.07 s with two readers, 0.78 s with one). Beside a GPU the cores are otherwise idle."""
    if torch.device(device).type == "cpu":
        return 1
    return cores(4)
