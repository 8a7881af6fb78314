"""The engine's feeding path: raw tiles from several reader threads, normalised on the device, valid masks carried
with the tiles, bounded released blocks and channels-last 2D networks."""

import threading

import numpy as np
import pytest
import torch

from segsuite.core.inference import StripMerger, TilePredictor, sliding_window


class Scale:
    """A normalizer: ``x / 100`` and 0 at nodata, counted."""

    def __init__(self) -> None:
        self.calls, self.masks = 0, []

    def __call__(self, x, valid, out):
        self.calls += 1
        self.masks.append(valid)
        out.copy_(x).div_(100)
        return out if valid is None else out.masked_fill_(~valid[:, None], 0)  # None: the batch is all valid


class RawArray:
    """A uint16 image read in its own dtype with a valid mask (0 is nodata), recording the reading threads."""

    def __init__(self, image: np.ndarray) -> None:
        self.image, self.shape = image, image.shape[1:]
        self.normalizer, self.threads = Scale(), set()

    def load(self, window):
        self.threads.add(threading.get_ident())
        r, c, h, w = window
        data = self.image[:, r : r + h, c : c + w]
        return data, (data != 0).all(0)

    def read(self, window):  # the plain Source API, unused by the engine for a RawSource
        raise AssertionError("a RawSource is read through load()")

    def skip(self, window):
        return not self.load(window)[1].any()


def _image() -> np.ndarray:
    image = np.random.default_rng(0).integers(1, 1000, (2, 90, 70)).astype(np.uint16)
    image[:, :20, :20] = 0  # a whole first window of nodata: skipped
    image[:, 50, 33] = 0  # one nodata pixel inside computed windows
    return image


class Recorder(torch.nn.Module):
    """The identity, keeping every batch it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        return x


def _run(source, readers, **kwargs):
    predictor = TilePredictor(Recorder(), "cpu", channels_last=False)
    blocks = list(sliding_window(predictor, [source], 2, (20, 20), (6, 6), batch_size=3, readers=readers, **kwargs))
    seen = predictor.model.seen  # the network it ran: a copy of its own in eval mode
    logits = torch.cat([b for _, _, b, _ in blocks], 1)
    covered = torch.cat([c for _, _, _, c in blocks])
    return logits, covered, seen, blocks


def test_raw_tiles_from_several_threads_are_normalised_on_the_device_with_their_nodata():
    image = _image()
    source = RawArray(image)
    logits, covered, seen, _ = _run(source, readers=3)
    valid = (image != 0).all(0)
    np.testing.assert_array_equal(covered.numpy(), valid)  # the carried masks: no second read of the file
    np.testing.assert_allclose(logits.numpy()[:, valid], image[:, valid] / 100, rtol=1e-6)
    assert (logits.numpy()[:, ~valid] == 0).all()
    assert all(x.dtype == torch.float32 for x in seen) and source.normalizer.calls == len(seen)
    assert len(source.threads) > 1 and threading.get_ident() not in source.threads


def test_all_valid_batches_reach_the_normalizer_without_a_mask():
    source = RawArray(np.random.default_rng(2).integers(1, 1000, (2, 40, 40)).astype(np.uint16))  # no nodata
    _run(source, readers=2)
    assert source.normalizer.masks and all(m is None for m in source.normalizer.masks)


def test_one_reader_and_several_give_the_same_result():
    one = _run(RawArray(_image()), readers=1)
    several = _run(RawArray(_image()), readers=4)
    assert torch.equal(one[0], several[0]) and torch.equal(one[1], several[1])


def test_released_blocks_stay_small_on_wide_images(monkeypatch):
    monkeypatch.setattr(StripMerger, "BLOCK_VALUES", 2 * 70 * 5)  # 5 rows of 2 channels x 70 px
    logits, covered, _, blocks = _run(RawArray(_image()), readers=2)
    assert max(b.shape[1] for _, _, b, _ in blocks) == 5 and logits.shape == (2, 90, 70)
    rows = [r for _, r, _, _ in blocks]
    assert rows == sorted(rows) and rows[0] == 0


def test_two_d_networks_run_channels_last_with_the_same_logits():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1))
    x = torch.randn(2, 3, 24, 24)
    with torch.inference_mode():
        expected = net(x)
    fast = TilePredictor(net, "cpu")
    torch.testing.assert_close(fast(x), expected, rtol=1e-5, atol=1e-5)
    assert fast.model[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("readers", [0, -1, 1.5, True])
def test_bad_reader_counts_are_refused(readers):
    from segsuite.core.errors import ConfigError
    from segsuite.core.inference import InferenceOptions

    with pytest.raises(ConfigError, match="readers="):
        InferenceOptions(readers=readers)


def test_channels_last_batches_are_normalised_tile_by_tile_to_the_same_values():
    image = _image()
    plain = _run(RawArray(image), readers=1)
    predictor = TilePredictor(Recorder(), "cpu", channels_last=True)
    blocks = list(sliding_window(predictor, [RawArray(image)], 2, (20, 20), (6, 6), batch_size=3, readers=1))
    assert all(x.is_contiguous(memory_format=torch.channels_last) for x in predictor.model.seen)
    assert torch.equal(torch.cat([b for _, _, b, _ in blocks], 1), plain[0])


def test_a_model_handing_back_its_input_keeps_each_whole_source_apart():
    """Sources of one window each skip the merger; their logits are kept while later batches reuse the buffers."""
    images = [np.full((2, 20, 20), 100 * (i + 1), np.uint16) for i in range(7)]
    images[3][:, 5, 5] = 0  # one with nodata: its mask buffer is reused too
    blocks = list(sliding_window(TilePredictor(Recorder(), "cpu"), [RawArray(im) for im in images], 2, (20, 20),
                                 (6, 6), batch_size=2, readers=1))
    for index, _, logits, covered in blocks:
        valid = (images[index] != 0).all(0)
        np.testing.assert_array_equal(covered.numpy(), valid)
        assert (logits.numpy()[:, valid] == index + 1).all() and (logits.numpy()[:, ~valid] == 0).all()


def test_batches_reuse_their_host_arrays(monkeypatch):
    from segsuite.core.inference.batch import HostBuffers

    made = []
    take = HostBuffers.take

    def counted(self, shape, dtype):
        array = take(self, shape, dtype)
        made.append(array.data_ptr())
        return array

    monkeypatch.setattr(HostBuffers, "take", counted)
    _run(RawArray(np.random.default_rng(3).integers(1, 1000, (2, 120, 120)).astype(np.uint16)), readers=1)
    assert len(made) > 12 and len(set(made)) <= 6  # tiles and masks of at most three batches in flight


def test_light_work_runs_on_one_torch_thread_in_its_own_thread_only():
    from segsuite.core.inference.memory import one_thread
    from segsuite.core.inference.options import default_readers

    before = torch.get_num_threads()
    inside, entered, leave = [], threading.Event(), threading.Event()

    def worker():
        with one_thread():
            inside.append(torch.get_num_threads())
            entered.set()
            leave.wait(5)

    thread = threading.Thread(target=worker)
    thread.start()
    entered.wait(5)
    assert inside == [1] and torch.get_num_threads() == before  # the other thread's count is its own
    leave.set()
    thread.join()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert default_readers("cpu") == 1 and default_readers("cuda") >= 1


def test_finished_blocks_are_made_one_at_a_time_as_they_are_taken(monkeypatch):
    """A long run of finished rows is not released at once: each block waits until the one before was taken."""
    monkeypatch.setattr(StripMerger, "BLOCK_VALUES", 2 * 70 * 3)  # 3 rows per block
    made = []

    class Counting(StripMerger):
        def release(self, upto):
            done = super().release(upto)
            if done is not None:
                made.append(done[0])
            return done

    def strips(shape, channels, buffer_rows, device):
        return Counting(*shape, channels, buffer_rows, device)

    taken = []
    for _, row, _, _ in sliding_window(TilePredictor(Recorder(), "cpu"), [RawArray(_image())], 2, (20, 20), (6, 6),
                                       batch_size=3, readers=1, merger=strips):
        taken.append(row)
        assert made == taken  # nothing made ahead of what was taken
    assert len(taken) > 20 and taken == sorted(taken)


def test_on_the_cpu_the_heap_is_offered_back_before_each_forward_pass(monkeypatch):
    from segsuite.core.inference import engine

    assert engine.heap_trimmer(limit=0) is None or engine.heap_trimmer(limit=0)() is None  # glibc: trims, no error
    calls = []
    monkeypatch.setattr(engine, "heap_trimmer", lambda: lambda: calls.append(1))
    predictor = TilePredictor(Recorder(), "cpu")
    list(sliding_window(predictor, [RawArray(_image())], 2, (20, 20), (6, 6), batch_size=3, readers=1))
    assert len(calls) == len(predictor.model.seen) > 1


def test_whole_sources_of_one_window_each_leave_the_heap_alone(monkeypatch):
    from segsuite.core.inference import engine

    calls = []
    monkeypatch.setattr(engine, "heap_trimmer", lambda: lambda: calls.append(1))
    predictor = TilePredictor(Recorder(), "cpu")
    frames = [RawArray(_image()), RawArray(_image())]  # whole frames, one window each: no merger, no blocks
    blocks = list(sliding_window(predictor, frames, 2, None, (0, 0), batch_size=1, readers=1))
    assert len(blocks) == 2 and len(predictor.model.seen) == 2 and calls == []  # a forward pass each, no trim
