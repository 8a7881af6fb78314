"""Column bands: a wide image blended band by band equals the full-width pass, in bounded merger width."""

import numpy as np
import pytest
import torch

from segsuite.core.errors import ConfigError
from segsuite.core.inference import ArraySource, InferenceOptions, TilePredictor, grid_bands, sliding_blocks
from segsuite.core.inference.options import BAND_STEP, STRIP_BUDGET


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d
    return torch.nn.Sequential(conv(3, 8, 3, padding=1), torch.nn.ReLU(), conv(8, 4, 3, padding=1))


def _stitch(blocks, shape, channels) -> tuple[np.ndarray, np.ndarray]:
    out, seen = np.zeros((channels, *shape), np.float32), np.zeros(shape, np.int64)
    for b in blocks:
        n, w = b.covered.shape
        out[:, b.row0 : b.row0 + n, b.col0 : b.col0 + w] = b.logits.numpy()
        seen[b.row0 : b.row0 + n, b.col0 : b.col0 + w] += 1
    assert (seen == 1).all()  # the rectangles tile the image once
    return out, out.argmax(0)


@pytest.mark.parametrize("band", [7, 20, 33])
def test_bands_equal_the_full_width_pass(band):
    image = np.random.default_rng(1).normal(size=(3, 45, 83)).astype(np.float32)
    predictor = TilePredictor(_net(), "cpu", channels_last=False)
    full = list(sliding_blocks(predictor, [ArraySource(image)], 4, InferenceOptions((16, 16), (6, 6), 3)))
    banded = list(sliding_blocks(predictor, [ArraySource(image)], 4, InferenceOptions((16, 16), (6, 6), 3, band=band)))
    assert {b.col0 for b in full} == {0}
    assert sorted({b.col0 for b in banded}) == list(range(0, 83, band))
    logits, classes = _stitch(full, (45, 83), 4)
    b_logits, b_classes = _stitch(banded, (45, 83), 4)
    probs, b_probs = (torch.from_numpy(x).softmax(0).numpy() for x in (logits, b_logits))
    assert np.abs(probs - b_probs).max() < 1e-6
    assert (classes == b_classes).all()


def test_band_grid_takes_every_window_touching_its_columns():
    bands = grid_bands(40, 100, (16, 16), (4, 4), 30)
    assert [(b.col0, b.col1) for b in bands] == [(0, 30), (30, 60), (60, 90), (90, 100)]
    for b in bands:
        assert all(w.col < b.col1 and w.col + w.width > b.col0 for w in b.windows)
        assert b.left <= b.col0 and b.right >= b.col1 and b.right - b.left <= 30 + 2 * 16


def test_auto_band_keeps_the_strip_under_the_budget():
    options = InferenceOptions((512, 512), (128, 128), band="auto")
    assert options.band_width((2048, 2048), 7, 512) is None  # fits: full width
    band = options.band_width((65536, 65536), 7, 512)
    assert band % BAND_STEP == 0 and 4 * 8 * 512 * (band + 2 * 512) <= STRIP_BUDGET
    assert InferenceOptions(band=None).band_width((10, 10**6), 7, 512) is None
    for width in (6145, 8192, 10980, 65536):  # the fewest bands that fit, all as wide (to a block)
        band = options.band_width((512, width), 7, 512)
        widest = (STRIP_BUDGET // (4 * 8 * 512) - 2 * 512) // BAND_STEP * BAND_STEP
        bands = -(-width // band)
        assert bands == -(-width // widest) and band <= widest and width - (bands - 1) * band > band - BAND_STEP * bands
    with pytest.raises(ConfigError, match="band="):
        InferenceOptions(band="wide")
