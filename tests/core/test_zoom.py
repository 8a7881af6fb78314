"""core.zoom: scipy's spline zoom as matrix products, equal to scipy's."""

import numpy as np
import torch
from scipy.ndimage import zoom

from segsuite.core.zoom import zoom_matrix, zoom_torch


def test_zoom_matrix_is_scipys_1d_zoom():
    x = np.random.default_rng(1).normal(size=13)
    for m in (5, 13, 31):
        expected = zoom(x, m / 13, order=3, mode="nearest", grid_mode=True)
        np.testing.assert_allclose(zoom_matrix(13, m) @ x, expected, atol=1e-12)


def test_zoom_torch_is_scipys_nd_zoom_per_channel():
    image = np.random.default_rng(2).normal(size=(2, 9, 40, 7)).astype(np.float32)
    shape = (5, 23, 15)  # shrink, shrink, grow: every axis through its own banded matrix
    ours = zoom_torch(torch.from_numpy(image), shape).numpy()
    for channel, got in zip(image, ours, strict=True):
        expected = zoom(channel.astype(np.float64), [m / n for m, n in zip(shape, channel.shape)], order=3,
                        mode="nearest", grid_mode=True)
        assert got.shape == shape and np.abs(got - expected).max() <= 1e-5 * np.ptp(expected)
