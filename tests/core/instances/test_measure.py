"""Per-instance measurements: sizes in physical units, centroids, boxes, means."""

import numpy as np
import pytest

from segsuite.core.instances import Instancer, measure_instances


def test_volume_centroid_box_and_mean_per_instance():
    semantic = np.zeros((4, 10, 10), np.int64)
    semantic[1:3, 1:4, 1:4] = 1  # 18 voxels
    ff = np.full(semantic.shape, 0.5)
    ff[1:3, 1:4, 1:4] = 0.2
    rows = measure_instances(Instancer([1], ["bg", "kidney"])(semantic), ["bg", "kidney"], spacing=(3.0, 1.5, 1.5),
                             to_world=lambda ijk: ijk * 2.0, values={"fat_fraction": ff})
    (row,) = rows
    assert row["class"] == "kidney" and row["voxels"] == 18
    assert row["volume_ml"] == pytest.approx(18 * 3.0 * 1.5 * 1.5 / 1000)
    assert (row["centroid_i"], row["centroid_j"], row["centroid_k"]) == (1.5, 2.0, 2.0)
    assert (row["centroid_x"], row["centroid_y"], row["centroid_z"]) == (3.0, 4.0, 4.0)
    assert (row["i0"], row["i1"], row["j0"], row["j1"]) == (1, 3, 1, 4)
    assert row["mean_fat_fraction"] == pytest.approx(0.2)


def test_area_in_2d():
    semantic = np.zeros((5, 5), np.int64)
    semantic[0:2, 0:3] = 1
    (row,) = measure_instances(Instancer([1], ["bg", "b"])(semantic), ["bg", "b"], spacing=(10.0, 10.0))
    assert row["pixels"] == 6 and row["area"] == 600.0 and (row["row0"], row["col1"]) == (0, 3)
