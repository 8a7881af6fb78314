"""Whole-raster checks and statistics, read chunk by chunk: value counts, band statistics of training windows, and the
image/label pair checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from segsuite.core.errors import DataError
from segsuite.domains.landcover.io import PathLike, chunk_windows, open_raster, read_raw, read_window, valid_pixels


def count_values(src: rasterio.DatasetReader, band: int = 1) -> tuple[dict[int, int], int]:
    """Pixel count per value of an integer ``band`` over valid pixels, read chunk by chunk; and the number of
    invalid (nodata/masked) pixels."""
    counts: dict[int, int] = {}
    invalid = 0
    small = np.dtype(src.dtypes[band - 1]) in (np.uint8, np.uint16)
    for window in chunk_windows(src):
        raw = read_raw(src, window, [band])  # (1, h, w)
        values, valid = raw[0], valid_pixels(src, window, [band], raw)
        invalid += int(valid.size - valid.sum())
        if small:  # bincount is linear time; unique sorts
            per_value = np.bincount(values[valid].ravel())
            ids = np.flatnonzero(per_value)
            pairs = zip(ids.tolist(), per_value[ids].tolist(), strict=True)
        else:
            pairs = zip(*(a.tolist() for a in np.unique(values[valid], return_counts=True)), strict=True)
        for value, n in pairs:
            counts[int(value)] = counts.get(int(value), 0) + int(n)
    return counts, invalid


def band_stats(cells: Sequence[tuple[PathLike, Window]], bands: Sequence[int] | None = None,
               max_pixels: int = 4_000_000, seed: int = 0, alpha_is_mask: bool | None = None) -> dict[str, Any]:
    """Per-band mean and std over valid pixels (as :func:`read_window` sees them) of candidate ``(path, window)`` cells.

    If the cells hold more than ``max_pixels`` pixels, a seeded random subset of cells within that budget is
    read, so huge scenes stay cheap; otherwise all are read and the result is exact. Returns plain lists:
    ``{"mean": [C], "std": [C], "pixels": int}``.
    """
    if not cells:
        raise DataError("no training windows to compute band statistics from")
    order = np.random.default_rng(seed).permutation(len(cells))
    chosen, budget = [], max_pixels
    for i in order:
        area = int(cells[i][1].width * cells[i][1].height)
        if chosen and area > budget:
            break
        chosen.append(cells[i])
        budget -= area
    by_file: dict[str, list[Window]] = {}
    for path, window in chosen:  # each file opened once
        by_file.setdefault(str(path), []).append(window)
    n, mean, m2 = 0, None, None
    for path, windows in by_file.items():
        with open_raster(path, check_data=False) as src:
            for window in windows:
                image, valid = read_window(src, window, bands, alpha_is_mask)
                x = image[:, valid].astype(np.float64)  # (C, n_valid)
                if x.shape[1] == 0:
                    continue
                n, mean, m2 = _merge_moments(n, mean, m2, x)
    if n == 0 or mean is None or m2 is None:
        raise DataError(f"no valid (non-nodata) pixels found in the training windows of {chosen[0][0]} and others")
    return {"mean": mean.tolist(), "std": np.sqrt(m2 / n).tolist(), "pixels": int(n)}


def _merge_moments(n: int, mean: np.ndarray | None, m2: np.ndarray | None, x: np.ndarray):
    """Chan et al. parallel update of count/mean/M2 with a ``(C, k)`` batch (numerically stable)."""
    k = x.shape[1]
    bmean = x.mean(axis=1)
    bm2 = ((x - bmean[:, None]) ** 2).sum(axis=1)
    if mean is None or m2 is None:
        return k, bmean, bm2
    delta = bmean - mean
    total = n + k
    return total, mean + delta * k / total, m2 + bm2 + delta**2 * n * k / total


def _same_transform(a: Affine, b: Affine) -> bool:
    """Coefficients equal up to 1e-9 relative (float noise from different writers)."""
    return all(abs(x - y) <= 1e-9 * max(1.0, abs(x), abs(y)) for x, y in zip(a[:6], b[:6], strict=True))


def check_pair(image_path: PathLike, label_path: PathLike) -> None:
    """Require the label raster to match the image: same CRS, transform and size; one integer band.
    The DataError lists every difference with both values."""
    with open_raster(image_path) as img, open_raster(label_path) as lbl:
        diffs = []
        if img.crs != lbl.crs:
            diffs.append(f"CRS: image {img.crs.to_string()} vs label {lbl.crs.to_string()}")
        if not _same_transform(img.transform, lbl.transform):
            diffs.append(f"transform: image {tuple(img.transform[:6])} vs label {tuple(lbl.transform[:6])}")
        if (img.width, img.height) != (lbl.width, lbl.height):
            diffs.append(f"width x height: image {img.width}x{img.height} vs label {lbl.width}x{lbl.height}")
        if diffs:
            raise DataError(f"label {label_path} does not match image {image_path}: " + "; ".join(diffs))
        if lbl.count != 1 or not np.issubdtype(np.dtype(lbl.dtypes[0]), np.integer):
            raise DataError(f"{label_path}: a label raster must have 1 integer band of class ids; "
                            f"got {lbl.count} band(s) of {lbl.dtypes[0]}")

