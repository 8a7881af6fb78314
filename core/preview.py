"""The demo page's picture of an input: its first three channels (or one, grey) stretched to RGB on the result's grid.

A preview is a nicety: any file it cannot read gives no picture, and the prediction itself reports bad files.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def stretch(image: np.ndarray, axis: int = 0) -> np.ndarray:
    """Channels-first ``(C, ...)`` floats -> uint8 ``(..., 3)``: the first three channels (or the first, grey), each
    stretched between its 2nd and 98th percentiles."""
    channels = image[:3] if image.shape[0] >= 3 else image[:1].repeat(3, 0)
    out = []
    for band in channels.astype(np.float32):
        finite = band[np.isfinite(band)]
        lo, hi = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
        out.append(np.clip((np.nan_to_num(band) - lo) / max(hi - lo, 1e-6), 0, 1))
    return (np.stack(out, -1) * 255).round().astype(np.uint8)


def input_preview(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The input as RGB uint8 on the result's grid ``shape`` ((H, W) or (D, H, W)), or None for unknown formats."""
    name = path.name.lower()
    try:
        if name.endswith(".npy"):
            image = np.load(path, mmap_mode="r", allow_pickle=False)
            return fit(stretch(np.asarray(image)), shape)
        if name.endswith((".tif", ".tiff")):
            return _raster_preview(path, shape)
        from PIL import Image

        with Image.open(path) as image:
            return fit(np.asarray(image.convert("RGB")), shape)
    except Exception as err:  # a preview is a nicety: the prediction itself reports bad files
        log.info("no preview of %s: %s", path, err)
        return None


def _raster_preview(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        bands = list(range(1, min(src.count, 3) + 1))
        data = src.read(bands, out_shape=(len(bands), *shape[-2:]), masked=True)
    return stretch(data.astype(np.float32).filled(np.nan))


def fit(rgb: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``rgb`` (*spatial, 3) sampled onto ``shape`` (every n-th pixel of a preview), or None when they differ."""
    if rgb.shape[:-1] == tuple(shape):
        return rgb
    steps = [max(1, round(a / b)) for a, b in zip(rgb.shape[:-1], shape)]
    sampled = rgb[tuple(slice(None, None, s) for s in steps)]
    return sampled if sampled.shape[:-1] == tuple(shape) else None
