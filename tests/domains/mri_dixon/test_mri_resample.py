"""Resampling to the plan's spacing and back: exact shapes, constants stay constant, labels round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segsuite.domains.mri_dixon.resample import (
    label_to_target,
    probabilities_back,
    resampled_affine,
    target_shape,
    to_target,
)


def _blob(shape, centre, radii) -> np.ndarray:
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return (sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1).astype(np.int16)


def test_shapes_follow_the_field_of_view():
    assert target_shape((17, 23, 9), (3.0, 3.0, 4.0), (1.5, 1.5, 3.0)) == (34, 46, 12)
    image, zoom = to_target(np.zeros((2, 17, 23, 9), np.float32), (3.0, 3.0, 4.0), (1.5, 1.5, 3.0))
    assert image.shape == (2, 34, 46, 12) and image.dtype == np.float32 and zoom == pytest.approx((2, 2, 12 / 9))


def test_constant_volume_stays_constant():
    image, _ = to_target(np.full((1, 13, 11, 7), 3.25, np.float32), (0.9, 1.1, 5.0), (1.0, 1.0, 2.0))
    assert np.allclose(image, 3.25, atol=1e-5)
    back = probabilities_back(np.full((3, *image.shape[1:]), 0.5, np.float32), (13, 11, 7))
    assert back.shape == (3, 13, 11, 7) and np.allclose(back, 0.5)


def test_already_at_target_is_untouched():
    image = np.random.default_rng(0).random((1, 8, 8, 4)).astype(np.float32)
    out, zoom = to_target(image, (1.5, 1.5, 3.0), (1.5, 1.5, 3.0))
    assert out is image and zoom == (1.0, 1.0, 1.0)
    assert to_target(image, (1.5, 1.5, 3.0), None)[0] is image


def test_label_round_trip_on_a_blob():
    """Labels (nearest) down to 3 x 3 x 4 mm and probabilities (linear) back to 1.5 x 1.5 x 3 mm: the argmax on the
    original grid keeps the blob (Dice > 0.9) and the exact original shape."""
    label = _blob((41, 37, 19), (20, 18, 9), (11, 9, 6))
    coarse = label_to_target(label, (1.5, 1.5, 3.0), (3.0, 3.0, 4.0))
    assert coarse.shape == target_shape(label.shape, (1.5, 1.5, 3.0), (3.0, 3.0, 4.0)) and coarse.dtype == label.dtype
    assert set(np.unique(coarse)) == {0, 1}
    back = probabilities_back(np.stack([coarse == 0, coarse == 1]).astype(np.float32), label.shape).argmax(0)
    assert back.shape == label.shape
    dice = 2 * (back & label).sum() / (back.sum() + label.sum())
    assert dice > 0.9, dice


def test_probabilities_back_keeps_tensors_on_their_device():
    probs = torch.rand(4, 6, 5, 3)
    out = probabilities_back(probs, (12, 10, 5))
    assert isinstance(out, torch.Tensor) and out.shape == (4, 12, 10, 5) and out.device == probs.device


def test_resampled_affine_keeps_the_field_of_view():
    """Voxel edges of the first and last voxel map to the same world points before and after."""
    affine = np.array([[0, -1.5, 0, 10], [2.0, 0, 0, -5], [0, 0, 3.0, 7], [0, 0, 0, 1]])
    shape, new_shape = (10, 8, 6), (20, 12, 4)
    new = resampled_affine(affine, shape, new_shape)
    for corner in (np.zeros(3), np.ones(3)):  # fractions of the field of view
        old_index = corner * np.array(shape) - 0.5
        new_index = corner * np.array(new_shape) - 0.5
        assert np.allclose(affine[:3, :3] @ old_index + affine[:3, 3], new[:3, :3] @ new_index + new[:3, 3])
