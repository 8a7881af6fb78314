"""Resampling canonical (RAS+) volumes to the plan's target spacing, and predictions back to the original grid.

Geometry: a volume of ``n`` voxels of ``s`` mm becomes ``m = round(n * s / t)`` voxels covering the same field of
view (voxel *edges* aligned, as nnU-Net's resize does): new voxel ``j`` samples old position ``(j + 0.5) * n / m -
0.5``, so the spacing becomes ``s * n / m`` (``t`` up to rounding) and the way back is the same rule in reverse.

Images use cubic B-spline interpolation (``scipy.ndimage.zoom``'s, order 3, as nnU-Net): sharper organ edges than
linear interpolation when upsampling thick slices. Resampling a regular grid to another is separable: scipy's
spline prefilter runs along one axis after the other and its interpolation weights are products of 1D weights,
with the edge replication (``mode="nearest"``) of each axis. So :func:`to_target` builds, once per axis and size, the
``(m, n)`` matrix that scipy's 1D zoom applies (its columns: the zoom of each unit vector, in float64) and applies
the three matrices with torch matrix products on any device (the predictor's at inference; on the CPU a 2D model's
slice plane slice by slice, as the engine reads them), in blocks of 32 output samples that read only the band of
inputs their weights reach (the prefilter's weights decay by 0.27 per sample): the same cubic B-spline as scipy's
3D zoom up to float32 rounding (at most 4.1e-7 of the range measured; ``tests/domains/mri_dixon/test_mri_resample.py``
holds it to 1e-5 of each channel's range on an anisotropic volume with an oblique structure), and on 2 CPU cores
about 10 times faster than scipy (4 x 256 x 256 x 64 -> 171 x 171 x 64: 0.24 s against 3.2 s, load average 5.5).
``backend="scipy"`` (or :data:`BACKEND`) keeps the old path.

Labels use nearest neighbour (scipy, on the CPU), so they keep their exact values. Probabilities go back linearly
by the same edge-aligned rule, slab by slab (:mod:`segsuite.core.inference.slabs`), for the argmax on the input grid.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from scipy.ndimage import zoom as nd_zoom

BACKEND = "torch"  # how to_target resamples images by default: "torch" (any device) or "scipy" (the old path)
SPACING_RTOL = 1e-3  # spacings this close to the target are left alone (no interpolation at all)


def target_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> tuple[int, ...]:
    """Voxels per axis covering the same field of view at the ``target`` spacing (at least 1)."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))


def needs_resampling(spacing: Sequence[float], target: Sequence[float] | None) -> bool:
    """False without a target or when every axis is already at it (within :data:`SPACING_RTOL`)."""
    return target is not None and not np.allclose(spacing, target, rtol=SPACING_RTOL, atol=0)


def _zoom_to(array: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """``(X, Y, Z)`` -> ``shape``, voxel edges aligned (``grid_mode``), edges replicated outside."""
    factors = [m / n for m, n in zip(shape, array.shape)]
    return nd_zoom(array, factors, order=order, mode="nearest", grid_mode=True)  # scipy rounds n * (m / n) to m


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


def to_target(
    image: np.ndarray, spacing: Sequence[float], target: Sequence[float] | None,
    device: torch.device | str | None = None, backend: str | None = None,
) -> tuple[np.ndarray, tuple[float, ...]]:
    """An image ``(C, X, Y, Z)`` of voxel ``spacing`` (mm) resampled to the ``target`` spacing (cubic spline), with
    torch on ``device`` (default the CPU; module docstring) or ``backend="scipy"`` as before (default:
    :data:`BACKEND`).

    Returns the resampled float32 ``(C, X', Y', Z')`` (numpy, on the host) and the zoom per axis (``X' / X``, ...).
    The image comes back unchanged (zoom 1) when it is already at the target or ``target`` is None.
    """
    shape = image.shape[1:]
    if not needs_resampling(spacing, target):
        return image, (1.0,) * len(shape)
    new_shape = target_shape(shape, spacing, target)
    zooms = tuple(m / n for m, n in zip(new_shape, shape))
    backend = backend or BACKEND
    if backend == "scipy":
        out = np.stack([_zoom_to(channel.astype(np.float32, copy=False), new_shape, order=3) for channel in image])
        return out.astype(np.float32, copy=False), zooms
    if backend != "torch":
        raise ValueError(f"to_target(backend={backend!r}): use 'torch' or 'scipy'")
    with torch.inference_mode():
        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(device or "cpu")
        return zoom_torch(tensor, new_shape).cpu().numpy(), zooms


def label_to_target(label: np.ndarray, spacing: Sequence[float], target: Sequence[float] | None) -> np.ndarray:
    """A label volume ``(X, Y, Z)`` resampled to ``target`` by nearest neighbour (same shape as :func:`to_target`)."""
    if not needs_resampling(spacing, target):
        return label
    return _zoom_to(label, target_shape(label.shape, spacing, target), order=0)


def resampled_affine(affine: np.ndarray, shape: Sequence[int], new_shape: Sequence[int]) -> np.ndarray:
    """The voxel-to-world affine of a volume resampled from ``shape`` to ``new_shape`` over the same field of view
    (new voxel ``j`` is old position ``(j + 0.5) * n / m - 0.5``)."""
    ratio = np.array([n / m for n, m in zip(shape, new_shape)], dtype=np.float64)
    step = np.eye(4)
    step[:3, :3] = np.diag(ratio)
    step[:3, 3] = 0.5 * ratio - 0.5
    return np.asarray(affine, dtype=np.float64) @ step
