"""A raw source's plain reads follow from its ``load`` and ``normalizer``: the model sees what the engine would
compute on the device, and windows of nodata only are skipped."""

import numpy as np
import torch

from segsuite.core.domain import BaseRawSource


class Tiles(BaseRawSource):
    """uint16 ``(2, 4, 6)``, nodata in the left 2 columns; normalised by ``(x - 100) / 10``, 0 at nodata."""

    def __init__(self) -> None:
        self.data = np.arange(100, 148, dtype=np.uint16).reshape(2, 4, 6)
        self.valid = np.ones((4, 6), bool)
        self.valid[:, :2] = False

    def load(self, window):
        r, c, h, w = window
        return self.data[:, r : r + h, c : c + w], self.valid[r : r + h, c : c + w]

    @staticmethod
    def normalizer(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        out = (x.float() - 100) / 10
        return out if valid is None else out.masked_fill(~valid[:, None], 0.0)


def test_read_normalises_as_the_device_would_and_zeroes_nodata():
    source = Tiles()
    tile = source.read((1, 1, 2, 3))  # rows 1-2, columns 1-3: column 1 is nodata
    expected = (source.data[:, 1:3, 1:4].astype(np.float32) - 100) / 10
    expected[:, :, 0] = 0.0
    assert tile.dtype == np.float32 and tile.shape == (2, 2, 3)
    np.testing.assert_array_equal(tile, expected)


def test_only_windows_without_a_valid_pixel_are_skipped():
    source = Tiles()
    assert source.skip((0, 0, 4, 2)) and not source.skip((0, 1, 4, 2))
    with source as opened:  # nothing to release by default
        assert opened is source
