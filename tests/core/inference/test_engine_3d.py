"""3D sliding windows: boxes cover a volume, blending is exact for a voxel-wise model, one window skips the merger,
tile dimensions must match the item's, flip TTA over every axis combination and bf16 autocast on the CPU."""

import itertools

import numpy as np
import pytest
import torch

from segsuite.core.errors import ConfigError
from segsuite.core.inference import (
    ArraySource,
    InferenceOptions,
    TilePredictor,
    blend_weights,
    predict_array,
    sliding_window,
)
from segsuite.core.inference.blend import blend_weights_nd
from segsuite.core.inference.windows import Box, grid_boxes, grid_for


@pytest.mark.parametrize("shape,tile,overlap", [((19, 23, 9), (8, 10, 4), (4, 5, 2)), ((6, 6, 6), (8, 8, 8), (4, 4, 4)),
                                                ((30, 17, 11), (16, 16, 11), (0, 3, 0))])
def test_grid_boxes_cover_every_voxel_with_full_boxes(shape, tile, overlap):
    cover = np.zeros(shape, int)
    boxes = grid_boxes(shape, tile, overlap)
    for box in boxes:
        assert box.size == tuple(min(t, n) for t, n in zip(tile, shape))
        assert all(0 <= s and s + n <= m for s, n, m in zip(box.start, box.size, shape))
        cover[box.slices()] += 1
    assert cover.min() >= 1
    assert boxes == sorted(boxes)  # C order: the first axis slowest


def test_blend_weights_nd_is_separable_and_keeps_2d():
    w = blend_weights_nd((7, 9, 5))
    assert w.shape == (7, 9, 5) and w.dtype == np.float32 and w.max() == 1 and w.min() > 0
    np.testing.assert_allclose(w, w[::-1, ::-1, ::-1])
    np.testing.assert_allclose(w[3] / w[3, 4, 2], blend_weights(9, 5), rtol=1e-6)  # the centre plane is the 2D one
    np.testing.assert_array_equal(blend_weights_nd((33, 20)), blend_weights(33, 20))


@pytest.mark.parametrize("tile,overlap,batch", [((8, 8, 8), (4, 4, 4), 3), ((16, 10, 6), (5, 3, 1), 2)])
def test_voxelwise_linear_model_blends_to_the_model_on_the_whole_volume(tile, overlap, batch):
    torch.manual_seed(0)
    net = torch.nn.Conv3d(2, 3, 1)
    volume = np.random.default_rng(0).normal(size=(2, 21, 13, 10)).astype(np.float32)
    out = predict_array(TilePredictor(net, "cpu"), volume, 3, tile=tile, overlap=overlap, batch_size=batch)
    with torch.no_grad():
        whole = net(torch.from_numpy(volume)[None])[0]
    assert out.shape == (3, 21, 13, 10)
    np.testing.assert_allclose(out.numpy(), whole.numpy(), rtol=1e-5, atol=1e-5)


def test_a_volume_in_one_box_skips_the_merger():
    def no_merger(*args, **kwargs):
        raise AssertionError("one window must not be merged")

    volume = np.random.default_rng(1).normal(size=(1, 6, 9, 5)).astype(np.float32)
    blocks = list(sliding_window(TilePredictor(torch.nn.Identity(), "cpu"), [ArraySource(volume)], 1,
                                 tile=(8, 16, 8), overlap=(0, 0, 0), merger=no_merger))
    assert len(blocks) == 1
    index, row0, logits, covered = blocks[0]
    assert (index, row0) == (0, 0) and bool(covered.all()) and covered.shape == (6, 9, 5)
    np.testing.assert_array_equal(logits.numpy(), volume)  # the window's output as it is: not blended


def test_volumes_come_out_whole_once_each():
    volumes = [np.full((1, 12, 7, 5), v, np.float32) for v in (1.0, 2.0)]
    blocks = list(sliding_window(TilePredictor(torch.nn.Identity(), "cpu"), [ArraySource(v) for v in volumes], 1,
                                 tile=(4, 4, 4), overlap=(2, 2, 2), batch_size=5, progress="boxes"))
    assert [(i, r, tuple(x.shape)) for i, r, x, _ in blocks] == [(0, 0, (1, 12, 7, 5)), (1, 0, (1, 12, 7, 5))]
    for (_, _, logits, covered), volume in zip(blocks, volumes):
        np.testing.assert_allclose(logits.numpy(), volume, rtol=1e-6)
        assert bool(covered.all())


def test_tile_dimensions_must_match_the_item():
    options = InferenceOptions((8, 8, 8), (2, 2, 2), 2)
    assert options.tile == (8, 8, 8) and options.grid((5, 6, 7)) == ((8, 8, 8), (2, 2, 2))
    assert InferenceOptions(None, (0, 0), 2).grid((5, 6, 7)) == ((5, 6, 7), (0, 0, 0))
    with pytest.raises(ConfigError, match=r"tile=\[8, 8, 8\] has 3 values but the item is 2D"):
        grid_for((32, 32), (8, 8, 8), (0, 0, 0))
    with pytest.raises(ConfigError, match=r"tile=\[8, 8\] has 2 values but the item is 3D"):
        list(sliding_window(TilePredictor(torch.nn.Identity(), "cpu"), [ArraySource(np.zeros((1, 8, 8, 8)))], 1,
                            tile=(8, 8), overlap=(0, 0)))
    with pytest.raises(ConfigError, match="one value per axis"):
        InferenceOptions((8, 8, 8), (2, 2))
    with pytest.raises(ConfigError, match=r"expected \[h, w\]"):
        InferenceOptions((8, 8, 8, 8), (2, 2, 2, 2))
    assert grid_for((9, 9, 9), (9, 9, 9), (0, 0, 0)) == [Box((0, 0, 0), (9, 9, 9))]


def test_flip_tta_over_every_axis_combination_of_identity_is_identity():
    flips = [c for n in (1, 2, 3) for c in itertools.combinations((-3, -2, -1), n)]
    volume = np.random.default_rng(2).normal(size=(2, 10, 9, 8)).astype(np.float32)
    predictor = TilePredictor(torch.nn.Identity(), "cpu", tta_flips=flips)
    out = predict_array(predictor, volume, 2, tile=(6, 6, 6), overlap=(2, 2, 2))
    np.testing.assert_allclose(out.numpy(), volume, rtol=1e-5, atol=1e-5)


def test_bf16_autocast_runs_on_the_cpu():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 2, 1))
    volume = np.random.default_rng(3).normal(size=(1, 12, 12, 12)).astype(np.float32)
    full = predict_array(TilePredictor(net, "cpu"), volume, 2, tile=(8, 8, 8), overlap=(4, 4, 4))
    half = predict_array(TilePredictor(net, "cpu", amp=True), volume, 2, tile=(8, 8, 8), overlap=(4, 4, 4))
    assert half.dtype == torch.float32
    assert not torch.equal(half, full)  # bf16 ran
    np.testing.assert_allclose(half.numpy(), full.numpy(), atol=0.05)
