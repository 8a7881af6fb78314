"""The U-Net weight map and the border target on hand-computed cases."""

import numpy as np
import pytest
import torch

from segsuite.core.errors import ConfigError, DataError
from segsuite.core.instances import Instancer, InstanceTargets, border_target, unet_weight_map


def two_squares(gap: int) -> np.ndarray:
    """Two 4x3 objects side by side with ``gap`` background columns between them, in a 6 x (8 + gap) image."""
    ids = np.zeros((6, 8 + gap), np.int64)
    ids[1:5, 1:4] = 1
    ids[1:5, 4 + gap : 7 + gap] = 2
    return ids


def test_weight_map_matches_the_formula_by_hand():
    ids = two_squares(gap=2)  # gap columns 4 and 5
    w = unet_weight_map(ids, w0=10.0, sigma=5.0)
    # (2, 4): 1 px from object 1, 2 px from object 2 -> 1 + 10 exp(-(1 + 2)^2 / 50)
    assert w[2, 4] == pytest.approx(1 + 10 * np.exp(-9 / 50), rel=1e-6)
    assert w[2, 5] == pytest.approx(1 + 10 * np.exp(-9 / 50), rel=1e-6)
    # (0, 0): diagonal to object 1 (sqrt 2), object 2 at (1, 6): sqrt(1 + 36)
    assert w[0, 0] == pytest.approx(1 + 10 * np.exp(-((np.sqrt(2) + np.sqrt(37)) ** 2) / 50), rel=1e-6)
    assert np.all(w[ids > 0] == 1.0)  # the separation term is for background only


def test_weight_map_is_class_weight_with_fewer_than_two_objects():
    ids = np.zeros((8, 8), np.int64)
    ids[2:5, 2:5] = 3
    wc = np.full((8, 8), 0.5, np.float32)
    assert np.array_equal(unet_weight_map(ids, class_weight=wc), wc)
    assert np.array_equal(unet_weight_map(np.zeros((4, 4), np.int64)), np.ones((4, 4), np.float32))


def test_weight_map_is_larger_in_narrow_gaps():
    narrow, wide = unet_weight_map(two_squares(1)), unet_weight_map(two_squares(6))
    assert narrow[2, 4] > wide[2, 4 + 3] > 1.0


def test_border_target_marks_contacts_and_narrow_gaps_only():
    touching = two_squares(gap=0)
    b = border_target(touching, width=1)
    assert b[1:5, 3].all() and b[1:5, 4].all()  # both sides of the contact
    assert not b[:, :3].any() and not b[:, 5:].any()
    gap1 = border_target(two_squares(gap=1), width=1)
    assert gap1[1:5, 4].all() and gap1.sum() == 6  # the gap column (rows 0..5: diagonal neighbours count too)
    assert not border_target(two_squares(gap=3), width=1).any()


def sample(instances: np.ndarray, mask: np.ndarray) -> dict:
    return {"image": torch.zeros(3, *mask.shape), "mask": torch.from_numpy(mask),
            "instances": torch.from_numpy(instances)}


META = {"class_names": ["ground", "building"], "num_classes": 2, "ignore_index": 255, "has_instances": True}


def test_instance_targets_adds_weight_and_border_for_thing_instances():
    ids = two_squares(gap=0)
    mask = (ids > 0).astype(np.int64)
    t = InstanceTargets(things=["building"])
    t.bind(META)
    out = t(sample(ids, mask))
    assert out["weight"].dtype == torch.float32 and out["weight"].shape == mask.shape
    assert out["border"][:, 3:5].eq(1).all() and out["border"].sum() == 12  # contact columns, rows 0..5


def test_instance_targets_errors_name_the_problem():
    with pytest.raises(ConfigError, match="unicorn"):
        InstanceTargets(things=["unicorn"]).bind(META)
    with pytest.raises(DataError, match="instance labels"):
        InstanceTargets(things=["building"]).bind({**META, "has_instances": False})
    with pytest.raises(ConfigError, match="sigma"):
        InstanceTargets(things=["building"], sigma=0)


def test_weight_map_border_target_and_instancer_work_on_volumes():
    """3D (a stack, a 3D network's patch): the same rules per voxel; the border channel splits touching objects."""
    ids = np.stack([two_squares(gap=0)] * 4)  # two boxes touching along a plane, 4 slices deep
    ids[0] = 0  # one empty slice above: voxels there are diagonal-or-face neighbours in z
    b = border_target(ids, width=1)
    assert b[1:4, 1:5, 3:5].all() and not b[:, :, :3].any() and not b[:, :, 5:].any()
    assert b[0, 1:5, 3:5].all()  # the slice above the contact lies within 1 voxel (chessboard) of both
    gap = np.stack([two_squares(gap=2)] * 3)
    w = unet_weight_map(gap, w0=10.0, sigma=5.0)
    assert w.shape == gap.shape and w[1, 2, 4] == pytest.approx(1 + 10 * np.exp(-9 / 50), rel=1e-6)
    # the instancer cuts touching 3D objects at a predicted border plane into two
    instances = Instancer(["building"], ["ground", "building"])((ids > 0).astype(np.int64), b.astype(np.float32))
    assert instances.n == 2 and instances.ids.shape == ids.shape
    assert len(np.unique(instances.ids[ids == 1])) == 1 and len(np.unique(instances.ids[ids == 2])) == 1
