"""Blending weights for overlapping tiles: high in the tile centre, small but positive at its edges."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BLEND_MODES = ("gaussian", "cosine", "constant")


def _profile(n: int, mode: str, sigma_scale: float) -> np.ndarray:
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2
    if mode == "gaussian":
        return np.exp(-0.5 * (x / max(sigma_scale * n, 1e-6)) ** 2)
    if mode == "cosine":
        return np.cos(np.pi * x / (n + 1)) ** 2  # Hann window without its zero endpoints
    return np.ones(n)


def blend_weights(height: int, width: int, mode: str = "gaussian", sigma_scale: float = 0.125,
                  floor: float = 1e-3) -> np.ndarray:
    """Separable per-pixel weights for one 2D tile: :func:`blend_weights_nd` of ``(height, width)``.

    Returns:
        (height, width) float32, maximum 1.
    """
    return blend_weights_nd((height, width), mode, sigma_scale, floor)


def blend_weights_nd(size: Sequence[int], mode: str = "gaussian", sigma_scale: float = 0.125,
                     floor: float = 1e-3) -> np.ndarray:
    """Separable per-voxel weights for one tile of any dimension (the outer product of one profile per axis).

    Args:
        size: the tile's size per axis, e.g. (h, w) or (d, h, w).
        mode: ``gaussian`` (sigma = ``sigma_scale`` x tile size per axis, as MONAI), ``cosine`` (Hann) or
            ``constant``.
        floor: smallest weight relative to the maximum, so voxels only an edge covers still count.

    Returns:
        float32 array of shape ``size``, maximum 1.
    """
    if mode not in BLEND_MODES:
        raise ValueError(f"unknown blend mode {mode!r}; choose one of {BLEND_MODES}")
    w = np.ones((), dtype=np.float64)
    for n in size:
        w = np.multiply.outer(w, _profile(int(n), mode, sigma_scale))
    return np.maximum(w / w.max(), floor).astype(np.float32)
