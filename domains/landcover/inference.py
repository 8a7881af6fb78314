"""Prediction-time input: a GeoTIFF read tile by tile and normalised exactly as in training.

``RasterSource`` fits the core's tiled-inference ``Source`` protocol (``shape``, ``read(window)``,
``skip(window)`` with windows as ``(row, col, height, width)``); pair it with ``io.open_output``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from core.errors import DataError
from domains.landcover.dataset import normalize
from domains.landcover.io import check_bands, chunk_windows, open_raster, read_raw, read_window, valid_pixels
from domains.landcover.sampling import Rect, full_rect, window_rect


def read_normalized(src: rasterio.DatasetReader, window: Window, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Read ``window`` with a checkpoint's ``meta``: its ``bands``, normalised with its training statistics, as
    float32 ``(C, h, w)`` (0 at nodata) plus the valid mask ``(h, w)``."""
    image, valid = read_window(src, window, meta["bands"])
    norm = meta["normalization"]
    return normalize(image, valid, norm["mean"], norm["std"]), valid


def check_band_count(src: rasterio.DatasetReader, meta: dict[str, Any]) -> None:
    """The raster must have as many bands as the training images (``meta["image_band_count"]``, when the training
    images agreed on one) and hold every band the model reads (``meta["bands"]``, 1-based)."""
    expected = meta.get("image_band_count")
    if expected is not None and src.count != expected:
        raise DataError(
            f"{src.name} has {src.count} band(s) but the model was trained on {expected}-band images "
            f"(reading bands {list(meta['bands'])}: {', '.join(meta.get('band_names', []))})"
        )
    check_bands(src, meta["bands"])


class RasterSource:
    """A GeoTIFF (or a rectangle ``region`` of it) as a tiled-inference source; windows are relative to the region.

    Tiles are read through one handle (the engine's reader thread), valid masks through another (the consuming
    thread), since a GDAL handle must not be shared by threads. Opening checks the file (readable, not truncated,
    has a CRS) and its bands against the checkpoint's ``meta``; each failure is a DataError naming the file.
    """

    def __init__(self, path: str | Path, meta: dict[str, Any], region: Rect | None = None) -> None:
        self.path, self.meta = Path(path), meta
        self._tiles = open_raster(self.path)  # DataError if unreadable, truncated or without CRS
        self._masks = open_raster(self.path, check_data=False)
        try:
            check_band_count(self._tiles, meta)
        except DataError:
            self.close()
            raise
        self.region = region or full_rect(self._tiles.height, self._tiles.width)
        self.shape = (self.region.height, self.region.width)
        self.profile = self._tiles.profile  # template for ``open_output``: CRS, transform, size
        self._last: tuple[tuple[int, ...], np.ndarray, np.ndarray] | None = None

    def _window(self, window: Sequence[int]) -> Window:
        """rasterio ``Window`` of a region-relative ``(row, col, height, width)``."""
        row, col, height, width = (int(v) for v in window)
        return Window(col + self.region.col0, row + self.region.row0, width, height)

    def _load(self, window: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        key = tuple(int(v) for v in window)
        if self._last is None or self._last[0] != key:  # skip() then read() of one window read it once
            self._last = (key, *read_normalized(self._tiles, self._window(key), self.meta))
        return self._last[1], self._last[2]

    def read(self, window: Sequence[int]) -> np.ndarray:
        """Normalised float32 ``(C, h, w)`` for ``(row, col, height, width)``; 0 at nodata."""
        return self._load(window)[0]

    def skip(self, window: Sequence[int]) -> bool:
        """True when the window holds only nodata."""
        return not self._load(window)[1].any()

    def valid_mask(self, window: Sequence[int]) -> np.ndarray:
        """Valid (not nodata, finite) mask ``(h, w)`` of a window inside the region; safe in the consuming thread."""
        bands, win = list(self.meta["bands"]), self._window(window)
        return valid_pixels(self._masks, win, bands, read_raw(self._masks, win, bands))

    def valid_rows(self, row0: int, rows: int) -> np.ndarray:
        """Valid mask ``(rows, W)`` of full-width rows, for writing nodata where the input is nodata."""
        return self.valid_mask((row0, 0, rows, self.shape[1]))

    def any_valid(self) -> bool:
        """Whether the region holds any valid pixel; reads block-aligned chunks and stops at the first valid one."""
        reg = self.region
        for chunk in map(window_rect, chunk_windows(self._masks)):
            r0, c0 = max(chunk.row0, reg.row0), max(chunk.col0, reg.col0)
            r1, c1 = min(chunk.row1, reg.row1), min(chunk.col1, reg.col1)
            if r1 <= r0 or c1 <= c0:
                continue
            if read_window(self._masks, Window(c0, r0, c1 - c0, r1 - r0), self.meta["bands"])[1].any():
                return True
        return False

    def close(self) -> None:
        self._tiles.close()
        self._masks.close()

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
