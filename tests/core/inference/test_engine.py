import numpy as np
import pytest
import torch

from segsuite.core.inference import ArraySource, TilePredictor, Window, predict_array, sliding_window


class Constant(torch.nn.Module):
    def forward(self, x):
        return torch.ones(x.shape[0], 2, *x.shape[-2:]) * torch.tensor([0.3, -1.7]).view(1, 2, 1, 1)


@pytest.mark.parametrize("blend", ["gaussian", "cosine"])
def test_constant_prediction_blends_to_a_constant(blend):
    out = predict_array(TilePredictor(Constant(), "cpu"), np.zeros((1, 97, 131), np.float32), 2,
                        tile=(32, 40), overlap=(9, 13), batch_size=3, blend=blend)
    np.testing.assert_allclose(out[0].numpy(), 0.3, rtol=1e-6)
    np.testing.assert_allclose(out[1].numpy(), -1.7, rtol=1e-6)


@pytest.mark.parametrize("tile,overlap,batch", [((32, 32), (8, 8), 4), ((50, 33), (13, 7), 5),
                                                 ((200, 200), (0, 0), 2), ((17, 16), (0, 3), 7)])
def test_identity_model_reproduces_its_input(tile, overlap, batch):
    image = np.random.default_rng(0).normal(size=(3, 101, 77)).astype(np.float32)
    out = predict_array(TilePredictor(torch.nn.Identity(), "cpu"), image, 3, tile=tile, overlap=overlap,
                        batch_size=batch)
    np.testing.assert_allclose(out.numpy(), image, rtol=1e-5, atol=1e-6)


def test_flip_tta_of_identity_is_identity():
    image = np.random.default_rng(1).normal(size=(2, 40, 30)).astype(np.float32)
    predictor = TilePredictor(torch.nn.Identity(), "cpu", tta_flips=[-1, -2])
    np.testing.assert_allclose(predict_array(predictor, image, 2, tile=(16, 16), overlap=(4, 4)).numpy(), image,
                               rtol=1e-5, atol=1e-6)


class Holes(ArraySource):
    """Skips every window whose top-left corner is the origin."""

    def skip(self, window: Window) -> bool:
        return window.row == 0 and window.col == 0


def test_rows_stream_in_order_and_skipped_tiles_are_not_covered():
    sources = [Holes(np.ones((1, 70, 50), np.float32)), ArraySource(np.ones((1, 20, 50), np.float32))]
    calls = []

    def model(x):
        calls.append(x.shape[0])
        return x

    blocks = list(sliding_window(TilePredictor(torch.nn.Identity(), "cpu"), sources, 1, tile=(16, 16),
                                 overlap=(0, 0), batch_size=4))
    for index, height in ((0, 70), (1, 20)):
        rows = [(r, b.shape[1]) for i, r, b, _ in blocks if i == index]
        assert rows[0][0] == 0 and sum(n for _, n in rows) == height
        assert all(r1 + n1 == r2 for (r1, n1), (r2, _) in zip(rows, rows[1:]))
    covered = torch.cat([c for i, _, _, c in blocks if i == 0])
    assert not covered[:16, :16].any() and covered[16:].all() and covered[:, 16:].all()
    assert len(blocks) > 2  # streamed in several blocks, not one


def test_buffer_holds_one_tile_of_rows():
    # The merger's buffer is tile_h x width whatever the image height: memory does not grow with height.
    from segsuite.core.inference import StripMerger

    merger = StripMerger(10_000, 64, 3, 32, torch.device("cpu"))
    assert merger.acc.shape == (3, 32, 64)


def test_reader_errors_reach_the_caller():
    class Broken(ArraySource):
        def read(self, window):
            raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        list(sliding_window(TilePredictor(torch.nn.Identity(), "cpu"), [Broken(np.zeros((1, 8, 8)))], 1,
                            tile=(4, 4), overlap=(0, 0)))


def test_reader_thread_stops_when_the_consumer_gives_up():
    import threading
    import time

    before = threading.active_count()
    gen = sliding_window(TilePredictor(torch.nn.Identity(), "cpu"), [ArraySource(np.zeros((1, 512, 64)))], 1,
                         tile=(8, 8), overlap=(0, 0), batch_size=1)
    next(gen)
    gen.close()  # e.g. the writer failed: the reader must not stay blocked on a full queue
    time.sleep(0.5)
    assert threading.active_count() <= before
