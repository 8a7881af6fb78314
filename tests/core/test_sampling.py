"""Training windows (core/sampling.py): placement, padding and class-balanced foreground sampling."""

from __future__ import annotations

import numpy as np
import torch

from segsuite.core.sampling import ClassLocations, crop_window, to_sample, window_starts


def test_windows_stay_inside_or_centre_a_short_axis():
    torch.manual_seed(0)
    starts = np.array([window_starts((50, 8), (16, 12)) for _ in range(300)])
    assert starts[:, 0].min() == 0 and starts[:, 0].max() == 34  # every position inside the long axis
    assert set(starts[:, 1]) == {-2}  # the short axis centred: 2 padded on each side


def test_a_window_around_a_pixel_always_holds_it():
    torch.manual_seed(0)
    for pixel in ([0, 0, 0], [39, 5, 19], [20, 3, 10]):
        for _ in range(50):
            starts = window_starts((40, 6, 20), (8, 8, 8), pixel)
            assert all(s <= p < s + 8 for s, p in zip(starts, pixel))
            assert starts[1] == -1 and 0 <= starts[0] <= 32 and 0 <= starts[2] <= 12


def test_crop_pads_image_with_zero_and_mask_with_the_ignore_index():
    image = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5) + 1
    mask = np.ones((4, 5), np.int64)
    img, msk = crop_window(image, mask, [-1, 2], [6, 4], ignore_index=99)
    assert img.shape == (2, 6, 4) and msk.shape == (6, 4)
    np.testing.assert_array_equal(img[:, 1:5, :3], image[:, :, 2:])
    assert (img[:, 0] == 0).all() and (img[:, 5] == 0).all() and (img[:, :, 3] == 0).all()
    assert (msk == 99).sum() == 6 * 4 - 4 * 3 and (msk[1:5, :3] == 1).all()
    sample = to_sample(img, msk)
    assert sample["image"].dtype == torch.float32 and sample["mask"].dtype == torch.int64


def test_class_locations_draw_every_present_class_equally():
    label = np.zeros((30, 30), np.int64)
    label[:20, :20] = 1  # 400 pixels
    label[25, 25] = 3  # one pixel: as likely as class 1
    locations = ClassLocations(label, [1, 2, 3], np.random.default_rng(0))
    assert locations and len(locations.coords) == 2  # class 2 is absent
    torch.manual_seed(0)
    picks = [tuple(locations.pick()) for _ in range(400)]
    rare = sum(p == (25, 25) for p in picks) / len(picks)
    assert 0.4 < rare < 0.6 and all(label[p] in (1, 3) for p in picks)
    assert all(locations.maybe(1.0) is not None for _ in range(20)) and locations.maybe(0.0) is None
    empty = ClassLocations(np.zeros((4, 4)), [1], np.random.default_rng(0))
    assert not empty and empty.maybe(1.0) is None


def test_many_pixels_are_subsampled_with_the_seed(monkeypatch):
    monkeypatch.setattr("segsuite.core.sampling.LOCATIONS_PER_CLASS", 50)
    label = np.ones((20, 20), np.int64)
    first, again = (ClassLocations(label, [1], np.random.default_rng(5)).coords[0] for _ in range(2))
    assert first.shape == (50, 2) and np.array_equal(first, again)
