"""The mergers behind one ABC and the factory that picks one for an item's shape; the engine makes every merger of
a source larger than one window through its ``merger`` argument, images and volumes alike."""

import numpy as np
import pytest
import torch

from segsuite.core.inference import (
    ArraySource,
    Merger,
    StripMerger,
    TilePredictor,
    VolumeMerger,
    make_merger,
    sliding_window,
)
from segsuite.core.inference.windows import Box, Window


def test_the_factory_makes_strips_for_images_and_whole_volumes_for_3d():
    cpu = torch.device("cpu")
    strips = make_merger((100, 30), 3, 16, cpu)
    assert isinstance(strips, StripMerger) and isinstance(strips, Merger)
    assert (strips.height, strips.width, strips.rows) == (100, 30, 16) and strips.acc.shape == (3, 16, 30)
    volume = make_merger((6, 5, 4), 2, 6, cpu)
    assert isinstance(volume, VolumeMerger) and isinstance(volume, Merger) and volume.acc.shape == (2, 6, 5, 4)


def test_both_mergers_answer_the_same_calls():
    cpu = torch.device("cpu")
    strips, volume = make_merger((4, 4), 1, 4, cpu), make_merger((2, 4, 4), 1, 2, cpu)
    strips.aggregate(torch.full((1, 4, 4), 2.0), Window(0, 0, 4, 4), torch.ones(4, 4))
    volume.aggregate(torch.full((1, 2, 4, 4), 2.0), Box((0, 0, 0), (2, 4, 4)), torch.ones(2, 4, 4))
    for merger, height in ((strips, 4), (volume, 2)):
        assert merger.release(0) is None
        row, values, covered = merger.release(height)
        assert row == 0 and bool((values == 2).all()) and bool(covered.all()) and merger.release(height) is None


def test_a_merger_must_implement_both_calls():
    class Half(Merger):
        def aggregate(self, values, window, weight):
            pass

    with pytest.raises(TypeError, match="release"):
        Half()


@pytest.mark.parametrize("image,tile,overlap", [((1, 40, 24), (16, 16), (4, 4)),
                                                ((1, 12, 10, 9), (8, 8, 8), (2, 2, 2))])
def test_the_engine_makes_each_merger_through_its_merger_argument(image, tile, overlap):
    made = []

    def recording(shape, channels, buffer_rows, device):
        made.append((tuple(shape), channels, buffer_rows))
        return make_merger(shape, channels, buffer_rows, device)

    data = np.random.default_rng(0).normal(size=image).astype(np.float32)
    blocks = list(sliding_window(TilePredictor(torch.nn.Identity(), "cpu"), [ArraySource(data)], 1, tile, overlap,
                                 merger=recording))
    assert made == [(image[1:], 1, tile[0])]
    np.testing.assert_allclose(torch.cat([b for _, _, b, _ in blocks], 1).numpy(), data, rtol=1e-6)


def test_a_strip_takes_the_channels_last_layout_of_its_windows_and_blends_the_same_values():
    """A network run channels-last hands out (K, h, w) with K innermost; the strip stored that way blends them
    without a transposing copy, to the same bits as a contiguous strip, and its blocks keep the layout."""
    rng = torch.Generator().manual_seed(0)
    values = torch.randn(2, 5, 12, 12, generator=rng)  # two windows of 5 classes
    weight = torch.rand(12, 12, generator=rng)
    released = {}
    layouts = {"contiguous": values, "channels-last": values.contiguous(memory_format=torch.channels_last)}
    for name, batch in layouts.items():
        merger = StripMerger(20, 20, 5, 12, torch.device("cpu"))
        blocks = []
        for i, window in enumerate((Window(0, 0, 12, 12), Window(8, 8, 12, 12))):
            blocks += _all_released(merger, window.row)
            merger.aggregate(batch[i], window, weight)
        blocks += _all_released(merger, 20)
        assert (merger.acc.stride(0) == 1) == (name == "channels-last")
        released[name] = torch.cat([b[1] for b in blocks], 1)
        assert [b[0] for b in blocks] == [0, 8]  # the second wraps round the ring
        assert all((b[1].stride(0) == 1) == (name == "channels-last") for b in blocks)
    assert torch.equal(released["channels-last"], released["contiguous"])


def _all_released(merger, upto):
    blocks = []
    while (block := merger.release(upto)) is not None:
        blocks.append(block)
    return blocks
