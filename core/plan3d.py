"""nnU-Net's planning rules for volumes with a physical voxel spacing (MRI, CT...), beside the 2D rules of
:mod:`segsuite.core.plan` whose batch and step-budget rules they share.

* **target spacing** (:func:`target_spacing`): the median spacing per axis; when one axis is much coarser (more than
  :data:`ANISOTROPY_RATIO` times the next coarsest spacing) *and* has far fewer voxels (its median voxel count times
  the ratio is below the others'), that axis takes the 10th percentile of its spacings instead (not finer than the
  other axes), so thick-slice outliers are not interpolated from a few slices;
* **patches** (:func:`patches`): start from the median shape (3D) or its in-plane part (2D, slices perpendicular to
  ``axis``), rounded up to a multiple of the network's divisor (3D: ``2 ** pools`` per axis from
  :func:`segsuite.core.models.topology`; 2D: :data:`segsuite.core.plan.DIVISOR`); while the patch holds more than
  what leaves room for :data:`MIN_BATCH` in the batch budget, shrink the axis that is largest relative to the median
  shape by one divisor step. Batch sizes: :func:`segsuite.core.plan.batch_size` with nnU-Net's 8 GB reference
  budgets (:data:`BATCH_VOXELS`), at least :data:`MIN_BATCH`;
* **foreground intensities** (:func:`foreground_sample`, :func:`intensity_statistics`): up to
  :data:`FOREGROUND_SAMPLES` voxels with a label > 0 drawn per case (seeded); their mean, median, std, min, max and
  0.5 / 99.5 percentiles per channel (nnU-Net's CT normalisation uses them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from segsuite.core import plan as planning
from segsuite.core.models import topology

ANISOTROPY_RATIO = 3.0
FOREGROUND_SAMPLES = 10_000
MIN_BATCH = 2
BATCH_VOXELS = {3: 2 * 128**3, 2: planning.BATCH_PIXELS_2D}  # per batch at the 8 GB reference

Layout = Callable[[list[int]], tuple[list[int], list[int]]]  # patch -> (rounded patch, divisor per axis)


def target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> tuple[np.ndarray, int | None]:
    """Target spacing of cases with ``spacings`` and ``shapes`` ``(cases, 3)`` (module docstring), and the
    anisotropic axis or None."""
    target = np.percentile(spacings, 50, axis=0)
    median_shape = np.percentile(shapes, 50, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != worst]
    coarse = target[worst] > ANISOTROPY_RATIO * max(target[a] for a in others)
    few = median_shape[worst] * ANISOTROPY_RATIO < min(median_shape[a] for a in others)
    if not (coarse and few):
        return target, None
    tenth = float(np.percentile(spacings[:, worst], 10))
    finest_other = max(target[a] for a in others)
    target[worst] = tenth if tenth >= finest_other else finest_other + 1e-5
    return target, worst


def fit_patch(median: Sequence[float], max_voxels: float, layout: Layout) -> list[int]:
    """The largest patch from ``median`` (rounded up by ``layout``) within ``max_voxels``: shrink the axis largest
    relative to the median by one divisor step at a time."""
    patch, divisor = layout([max(1, math.ceil(m)) for m in median])
    while math.prod(patch) > max_voxels:
        order = np.argsort([-p / m for p, m in zip(patch, median)], kind="stable")
        axis = next((int(a) for a in order if patch[a] > divisor[a]), None)
        if axis is None:
            break
        smaller = list(patch)
        smaller[axis] -= divisor[axis]
        patch, divisor = layout(smaller)
    return [int(p) for p in patch]


def _layout_3d(spacing: Sequence[float]) -> Layout:
    def layout(patch: list[int]) -> tuple[list[int], list[int]]:
        shape = topology(spacing, patch)
        return shape.patch_size, shape.divisor

    return layout


def _layout_2d(patch: list[int]) -> tuple[list[int], list[int]]:
    step = planning.DIVISOR
    return [-(-p // step) * step for p in patch], [step] * len(patch)


def patches(median_shape: Sequence[float], spacing: Sequence[float], axis: int, memory_gb: float,
            dataset_voxels: float) -> dict[int, tuple[list[int], int]]:
    """``{2: (patch, batch), 3: (patch, batch)}`` for cases of ``median_shape`` at ``spacing`` (module docstring);
    2D patches lie in the plane perpendicular to ``axis``."""
    scale = memory_gb / planning.REFERENCE_GB
    plane = [float(m) for a, m in enumerate(median_shape) if a != axis]
    fitted = {2: fit_patch(plane, BATCH_VOXELS[2] * scale / MIN_BATCH, _layout_2d),
              3: fit_patch(list(median_shape), BATCH_VOXELS[3] * scale / MIN_BATCH, _layout_3d(spacing))}
    return {dims: (patch, planning.batch_size(patch, dataset_voxels, memory_gb, MIN_BATCH, BATCH_VOXELS[dims]))
            for dims, patch in fitted.items()}


def foreground_sample(values: np.ndarray, foreground: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Up to :data:`FOREGROUND_SAMPLES` of ``values`` where ``foreground`` (same shape), drawn without repeats."""
    inside = values[foreground]
    count = min(len(inside), FOREGROUND_SAMPLES)
    return rng.choice(inside, count, replace=False) if count else inside


def intensity_statistics(values: np.ndarray) -> dict[str, float | None]:
    """nnU-Net's foreground intensity properties of one channel (all None without foreground)."""
    if not len(values):
        return dict.fromkeys(("mean", "median", "std", "min", "max", "percentile_00_5", "percentile_99_5"))
    low, median, high = np.percentile(values, (0.5, 50.0, 99.5))
    return {"mean": float(values.mean()), "median": float(median), "std": float(values.std()),
            "min": float(values.min()), "max": float(values.max()), "percentile_00_5": float(low),
            "percentile_99_5": float(high)}
