"""nnU-Net's planning rules for volumes (core/plan3d.py): target spacing, patches in the memory budget, foreground
intensity statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segsuite.core import plan as planning
from segsuite.core import plan3d
from segsuite.core.models import topology


def test_median_spacing_and_the_anisotropy_rule():
    iso = [(1.0, 1.0, 1.0), (1.2, 0.8, 1.5), (0.9, 1.1, 1.2)]
    target, axis = plan3d.target_spacing(np.array(iso), np.array([(100, 100, 100)] * 3))
    assert target == pytest.approx([1.0, 1.0, 1.2]) and axis is None
    # thick slices with few voxels: the coarse axis takes its 10th percentile, not the median (5 mm)
    thick = [(0.8, 0.8, z) for z in (3.0, 4.0, 5.0, 5.0, 6.0, 8.0)]
    target, axis = plan3d.target_spacing(np.array(thick), np.array([(256, 256, 30)] * 6))
    assert axis == 2 and target[2] == pytest.approx(np.percentile([3, 4, 5, 5, 6, 8], 10))
    # coarse but not few voxels (a tall stack): the median stays
    target, axis = plan3d.target_spacing(np.array(thick), np.array([(256, 256, 200)] * 6))
    assert axis is None and target[2] == pytest.approx(5.0)


def test_patches_fit_the_budget_and_the_networks_divisors():
    voxels = 10 * 300 * 280 * 260
    fitted = plan3d.patches([300, 280, 260], [1.0, 1.0, 1.0], axis=2, memory_gb=8.0, dataset_voxels=voxels)
    (patch_2d, batch_2d), (patch_3d, batch_3d) = fitted[2], fitted[3]
    assert math.prod(patch_3d) <= plan3d.BATCH_VOXELS[3] / plan3d.MIN_BATCH and batch_3d == plan3d.MIN_BATCH
    assert topology([1.0, 1.0, 1.0], patch_3d).patch_size == patch_3d  # divisible by 2 ** pools on every axis
    assert math.prod(patch_2d) <= plan3d.BATCH_VOXELS[2] / 2 and all(p % planning.DIVISOR == 0 for p in patch_2d)
    assert batch_2d == planning.batch_size(patch_2d, voxels, 8.0, 2, plan3d.BATCH_VOXELS[2])
    small = plan3d.patches([40, 40, 12], [1.0, 1.0, 3.0], axis=0, memory_gb=8.0, dataset_voxels=40 * 40 * 12)
    assert small[2][0] == [64, 32]  # the (A, S) plane of the median, rounded up to 32s
    # shrinking takes the axis largest relative to the median first, one divisor step at a time
    assert plan3d.fit_patch([100, 50], 64 * 64, plan3d._layout_2d) == [96, 32]  # 128 x 64 -> 96 x 64 -> 96 x 32
    assert plan3d.fit_patch([100, 50], 1, plan3d._layout_2d) == [32, 32]  # never below one divisor step


def test_foreground_samples_and_their_statistics():
    values = np.arange(100.0).reshape(10, 10)
    foreground = values >= 50
    sample = plan3d.foreground_sample(values, foreground, np.random.default_rng(0))
    assert sorted(sample) == list(range(50, 100))  # fewer than the limit: every foreground value once
    stats = plan3d.intensity_statistics(sample)
    assert stats["mean"] == 74.5 and stats["min"] == 50 and stats["max"] == 99
    assert stats["percentile_00_5"] == pytest.approx(np.percentile(sample, 0.5)) and stats["median"] == 74.5
    assert set(plan3d.intensity_statistics(np.zeros(0)).values()) == {None}
    assert len(plan3d.foreground_sample(values, values < 0, np.random.default_rng(0))) == 0
