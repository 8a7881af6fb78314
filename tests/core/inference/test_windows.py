import numpy as np
import pytest

from segsuite.core.inference import blend_weights, grid_windows


@pytest.mark.parametrize("size,tile,overlap", [((101, 77), (32, 32), (8, 8)), ((64, 64), (64, 64), (0, 0)),
                                                ((20, 300), (32, 50), (5, 17)), ((513, 511), (128, 96), (31, 0))])
def test_grid_covers_every_pixel_with_full_tiles(size, tile, overlap):
    cover = np.zeros(size, int)
    windows = grid_windows(*size, tile, overlap)
    for r, c, h, w in windows:
        assert (h, w) == (min(tile[0], size[0]), min(tile[1], size[1]))
        assert r + h <= size[0] and c + w <= size[1]
        cover[r : r + h, c : c + w] += 1
    assert cover.min() >= 1
    assert windows == sorted(windows)  # row-major order, which the streaming merger relies on


def test_bad_overlap_is_refused():
    with pytest.raises(ValueError, match="overlap"):
        grid_windows(100, 100, (32, 32), (32, 0))


@pytest.mark.parametrize("mode", ["gaussian", "cosine", "constant"])
def test_blend_weights_positive_peaked_symmetric(mode):
    w = blend_weights(33, 20, mode)
    assert w.dtype == np.float32 and w.min() > 0 and w.max() == 1
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert w[16, 9] >= w[0, 0]
