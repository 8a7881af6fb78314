"""Sampling geometry (core/regions.py): validation grids, spatial hold-out and the training windows in it, rare-class
weights (the chunk sampler itself: tests/core/test_chunks.py)."""

import numpy as np
import pytest

from segsuite.core.chunks import ChunkSampler
from segsuite.core.errors import ConfigError
from segsuite.core.regions import Rect, full_rect, grid_rects, holdout_split, repeat_factor_weights


def _cover_count(height, width, rects):
    count = np.zeros((height, width), int)
    for r in rects:
        count[r.row0 : r.row1, r.col0 : r.col1] += 1
    return count


@pytest.mark.parametrize(
    ("height", "width", "patch"), [(64, 64, (16, 16)), (70, 45, (16, 16)), (10, 7, (16, 16)), (50, 33, (8, 24))]
)
def test_grid_owned_parts_cover_every_pixel_once(height, width, patch):
    rect = Rect(3, 2, 3 + height, 2 + width)
    items = grid_rects(rect, patch)
    count = np.zeros((rect.row1, rect.col1), int)
    for w, own in items:
        assert (w.height, w.width) == patch
        assert w.row0 <= own.row0 and own.row1 <= w.row1 and w.col0 <= own.col0 and own.col1 <= w.col1
        if height >= patch[0]:
            assert rect.row0 <= w.row0 and w.row1 <= rect.row1  # no padding when the rect is big enough
        if width >= patch[1]:
            assert rect.col0 <= w.col0 and w.col1 <= rect.col1
        count[own.row0 : own.row1, own.col0 : own.col1] += 1
    assert (count[3:, 2:] == 1).all() and count.sum() == height * width


@pytest.mark.parametrize("mode", ["strip", "blocks"])
@pytest.mark.parametrize(("height", "width"), [(100, 300), (300, 100), (257, 255)])
def test_spatial_holdout_partitions_scene_without_overlap(mode, height, width):
    train, val = holdout_split(height, width, 0.25, mode, block=64, seed=1)
    np.testing.assert_array_equal(_cover_count(height, width, train + val), 1)  # a partition of the scene
    held = sum(r.area for r in val) / (height * width)
    assert 0.1 < held < 0.4
    patch = (32, 32)
    val_windows = [w for r in val for w, _ in grid_rects(r, patch)]
    sampler = ChunkSampler(train, patch, [(64, 64)] * len(train))
    for _ in range(300):  # random training windows never touch validation windows
        chunk, _, box = sampler.draw(lambda chunk: None)
        rect, w = train[chunk.item], box
        assert rect.row0 <= w.row0 and w.row1 <= rect.row1 and rect.col0 <= w.col0 and w.col1 <= rect.col1
        assert not any(w.overlaps(v) for v in val_windows)


def test_strip_holds_out_the_longer_axis():
    assert holdout_split(100, 400, 0.25) == ([Rect(0, 0, 100, 300)], [Rect(0, 300, 100, 400)])
    assert holdout_split(400, 100, 0.25) == ([Rect(0, 0, 300, 100)], [Rect(300, 0, 400, 100)])
    with pytest.raises(ConfigError, match="holdout_fraction must be in"):
        holdout_split(10, 10, 1.0)
    with pytest.raises(ConfigError, match="holdout_mode must be one of"):
        holdout_split(10, 10, 0.2, mode="random")


def test_repeat_factor_weights_by_hand():
    presence = np.array([[1, 0], [1, 0], [1, 0], [1, 1], [0, 0]], bool)
    # f = [0.8, 0.2]; factors = [max(1, sqrt(0.5/0.8)), sqrt(0.5/0.2)] = [1, 1.5811]; empty cell -> 0
    expected = np.array([1, 1, 1, np.sqrt(2.5), 0])
    np.testing.assert_allclose(repeat_factor_weights(presence, threshold=0.5), expected / expected.sum())


def test_full_rect():
    assert full_rect(5, 7) == Rect(0, 0, 5, 7) and full_rect(5, 7).area == 35
