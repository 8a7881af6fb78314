"""Resampling to the plan's spacing and back: exact shapes, constants stay constant, labels round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segsuite.core.inference.slabs import Stack, restore_stack
from segsuite.domains.mri_dixon.resample import (
    label_to_target,
    resampled_affine,
    target_shape,
    to_target,
)


def _back(probabilities: np.ndarray, shape) -> np.ndarray:
    """Class probabilities ``(K, X', Y', Z')`` back to ``shape`` as predict brings them (slab by slab, along X)."""
    stack = Stack(probabilities.shape[1], probabilities.shape[2:], tuple(shape))
    return restore_stack(stack, torch.from_numpy(probabilities).log()).exp().numpy()


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
    back = _back(np.full((3, *image.shape[1:]), 1 / 3, np.float32), (13, 11, 7))
    assert back.shape == (3, 13, 11, 7) and np.allclose(back, 1 / 3)


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
    back = _back(np.stack([coarse == 0, coarse == 1]).astype(np.float32), label.shape).argmax(0)
    assert back.shape == label.shape
    dice = 2 * (back & label).sum() / (back.sum() + label.sum())
    assert dice > 0.9, dice


def test_resampled_affine_keeps_the_field_of_view():
    """Voxel edges of the first and last voxel map to the same world points before and after."""
    affine = np.array([[0, -1.5, 0, 10], [2.0, 0, 0, -5], [0, 0, 3.0, 7], [0, 0, 0, 1]])
    shape, new_shape = (10, 8, 6), (20, 12, 4)
    new = resampled_affine(affine, shape, new_shape)
    for corner in (np.zeros(3), np.ones(3)):  # fractions of the field of view
        old_index = corner * np.array(shape) - 0.5
        new_index = corner * np.array(new_shape) - 0.5
        assert np.allclose(affine[:3, :3] @ old_index + affine[:3, 3], new[:3, :3] @ new_index + new[:3, 3])


def _oblique_volume(shape, seed: int = 0) -> np.ndarray:
    """``(2, *shape)``: an ellipsoid tilted against every axis (sharp edges, the spline's hard case), a smooth ramp
    and noise, in two channels of different ranges."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # a random rotation: the ellipsoid is oblique to the grid
    local = np.einsum("ij,j...->i...", q, grid)
    inside = ((local / np.array([0.7, 0.4, 0.25])[:, None, None, None]) ** 2).sum(0) <= 1
    water = 800.0 * inside + 100.0 * grid[0] + rng.normal(0, 20, shape)
    fat = 0.3 * (1 - inside) + 0.05 * grid[2] + rng.normal(0, 0.01, shape)
    return np.stack([water, fat]).astype(np.float32)


@pytest.mark.parametrize("spacing,target", [((0.8, 1.1, 4.0), (1.5, 1.5, 3.0)),  # in-plane shrinks, slices added
                                            ((2.0, 1.3, 2.2), (1.0, 1.5, 4.4))])
def test_torch_resampling_is_scipys_cubic_spline_to_float32_rounding(spacing, target):
    """The separable matrices reproduce scipy's 3D cubic B-spline zoom (the old path) within 1e-5 of each channel's
    range on an anisotropic volume with an oblique structure, both ways (growing and shrinking axes)."""
    image = _oblique_volume((75, 45, 11))  # long enough axes for several blocks of the banded matrices
    ours, zoom = to_target(image, spacing, target)
    scipys, zoom_s = to_target(image, spacing, target, backend="scipy")
    assert ours.shape == scipys.shape and ours.dtype == np.float32 and zoom == zoom_s
    for channel, reference in zip(ours, scipys):
        span = float(np.ptp(reference))
        assert np.abs(channel - reference).max() <= 1e-5 * span, np.abs(channel - reference).max() / span


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="'torch' or 'scipy'"):
        to_target(np.zeros((1, 4, 4, 4), np.float32), (1.0, 1.0, 1.0), (2.0, 2.0, 2.0), backend="cupy")

