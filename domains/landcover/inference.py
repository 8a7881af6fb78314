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

from domains.landcover.dataset import normalize
from domains.landcover.io import check_bands, open_raster, read_raw, read_window


def read_normalized(src: rasterio.DatasetReader, window: Window, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Read ``window`` with a checkpoint's ``meta``: its ``bands``, normalised with its training statistics, as
    float32 ``(C, h, w)`` (0 at nodata) plus the valid mask ``(h, w)``."""
    image, valid = read_window(src, window, meta["bands"])
    norm = meta["normalization"]
    return normalize(image, valid, norm["mean"], norm["std"]), valid


class RasterSource:
    """A GeoTIFF as a tiled-inference source. Tiles are read through one handle (the engine's reader thread),
    ``valid_rows`` through another (the writing thread), since a GDAL handle must not be shared by threads."""

    def __init__(self, path: str | Path, meta: dict[str, Any]) -> None:
        self.path, self.meta = Path(path), meta
        self._tiles = open_raster(self.path)  # DataError if unreadable, truncated or without CRS
        self._masks = open_raster(self.path, check_data=False)
        check_bands(self._tiles, meta["bands"])
        self.shape = (self._tiles.height, self._tiles.width)
        self.profile = self._tiles.profile  # template for ``open_output``: CRS, transform, size
        self._last: tuple[tuple[int, ...], np.ndarray, np.ndarray] | None = None

    def _load(self, window: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        key = tuple(int(v) for v in window)
        if self._last is None or self._last[0] != key:  # skip() then read() of one window read it once
            row, col, height, width = key
            self._last = (key, *read_normalized(self._tiles, Window(col, row, width, height), self.meta))
        return self._last[1], self._last[2]

    def read(self, window: Sequence[int]) -> np.ndarray:
        """Normalised float32 ``(C, h, w)`` for ``(row, col, height, width)``; 0 at nodata."""
        return self._load(window)[0]

    def skip(self, window: Sequence[int]) -> bool:
        """True when the window holds only nodata."""
        return not self._load(window)[1].any()

    def valid_rows(self, row0: int, rows: int) -> np.ndarray:
        """Valid mask ``(rows, W)`` of full-width rows, for writing nodata where the input is nodata."""
        window = Window(0, row0, self.shape[1], rows)
        bands = list(self.meta["bands"])
        if all(np.issubdtype(np.dtype(self._masks.dtypes[b - 1]), np.integer) for b in bands):
            return (read_raw(self._masks, window, bands, masks=True) > 0).all(axis=0)  # no NaN possible: masks only
        return read_window(self._masks, window, bands)[1]

    def close(self) -> None:
        self._tiles.close()
        self._masks.close()

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
