"""scipy's spline zoom (``scipy.ndimage.zoom``, voxel edges aligned, edges replicated) as torch matrix products, on
any device and without scipy's CPU time.

Resampling a regular grid to another is separable: scipy's spline prefilter runs along one axis after the other and
its interpolation weights are products of 1D weights, with the edge replication (``mode="nearest"``) of each axis.
So :func:`zoom_torch` builds, once per axis and size, the ``(m, n)`` matrix that scipy's 1D zoom applies (its
columns: the zoom of each unit vector, in float64) and applies one per axis with torch matrix products, in blocks of
32 output samples that read only the band of inputs their weights reach (the prefilter's weights decay by 0.27 per
sample): the same spline as scipy's n-dimensional zoom up to float32 rounding (at most 4.1e-7 of the range measured
on an MRI volume). Written here because neither torch (``interpolate`` has no B-spline prefilter) nor MONAI
(``Spacing`` with ``mode=3`` calls scipy on the CPU) does it on the device.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from scipy.ndimage import zoom as nd_zoom


@functools.lru_cache(maxsize=64)
def zoom_matrix(n: int, m: int, order: int = 3) -> np.ndarray:
    """The ``(m, n)`` float64 matrix of scipy's 1D zoom from ``n`` to ``m`` samples (order ``order``, voxel edges
    aligned, edges replicated): column ``i`` is the zoom of the ``i``-th unit vector, so ``zoom(x) == W @ x``."""
    eye = np.eye(n)
    return np.stack([nd_zoom(e, m / n, order=order, mode="nearest", grid_mode=True) for e in eye], axis=1)


BAND_RTOL = 1e-9  # zoom weights below this fraction of their row's largest are left out (nothing in float32)
BLOCK = 32  # output samples per matrix product: the smaller, the narrower the band of inputs each one reads


@functools.lru_cache(maxsize=64)
def _banded(n: int, m: int, order: int) -> tuple[tuple[int, int, int, int, torch.Tensor], ...]:
    """:func:`zoom_matrix` cut into blocks of :data:`BLOCK` rows, each with the span of columns it needs:
    ``(j0, j1, i0, i1, W[j0:j1, i0:i1])`` (float32). The spline's prefilter decays by 0.27 per sample, so a row
    reaches about 16 input samples either side of its position."""
    weights = zoom_matrix(n, m, order)
    needed = np.abs(weights) > BAND_RTOL * np.abs(weights).max(1, keepdims=True)
    blocks = []
    for j0 in range(0, m, BLOCK):
        j1 = min(m, j0 + BLOCK)
        cols = np.flatnonzero(needed[j0:j1].any(0))
        i0, i1 = int(cols[0]), int(cols[-1]) + 1
        blocks.append((j0, j1, i0, i1, torch.from_numpy(weights[j0:j1, i0:i1]).float()))
    return tuple(blocks)


def _zoom_axis(x: torch.Tensor, dim: int, m: int, order: int) -> torch.Tensor:
    """``x`` zoomed to ``m`` samples along ``dim`` (block by block of the banded matrix, no transposed copies)."""
    shape = list(x.shape)
    n, shape[dim] = shape[dim], m
    out = torch.empty(shape, dtype=x.dtype, device=x.device)
    last = dim == x.dim() - 1
    for j0, j1, i0, i1, block in _banded(n, m, order):
        w = block.to(x.device)
        if last:
            out[..., j0:j1] = x[..., i0:i1] @ w.T
        else:
            src = x.narrow(dim, i0, i1 - i0).flatten(dim + 1)  # (..., n', tail)
            out.narrow(dim, j0, j1 - j0).flatten(dim + 1).copy_(w @ src)
    return out


def zoom_torch(image: torch.Tensor, shape: Sequence[int], order: int = 3) -> torch.Tensor:
    """``(C, X, Y, Z)`` (or a slice ``(C, H, W)``) float32 -> ``(C, *shape)``: scipy's zoom (:func:`zoom_matrix` per
    axis, as banded blocks) as matrix products on the tensor's device, axes that shrink first (fewer voxels for the
    next product); an axis already of its size is left as it is (scipy's zoom by 1 reproduces it up to rounding)."""
    out = image
    for axis in sorted(range(len(shape)), key=lambda a: shape[a] / image.shape[a + 1]):
        if out.shape[axis + 1] != int(shape[axis]):
            out = _zoom_axis(out, axis + 1, int(shape[axis]), order)
    return out
