"""The pipeline's sink thread: predictions are written on their own thread, errors there stop the item and every
sink is aborted."""

import threading
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from segsuite.core import pipeline
from segsuite.core.contracts import DataMeta, Job, ModelInfo
from segsuite.core.errors import DataError
from segsuite.core.inference import ArraySource, InferenceOptions, TilePredictor


class Opened:
    def __init__(self, height: int) -> None:
        self.sources = [ArraySource(torch.zeros(1, height, 8).numpy())]
        self.streaming = True

    def restore(self, logits):
        return logits

    def close(self):
        pass


class Sink:
    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at, self.rows, self.threads, self.state = fail_at, 0, set(), "open"

    def update(self, prediction):
        self.threads.add(threading.get_ident())
        if self.fail_at is not None and prediction.row0 >= self.fail_at:
            raise OSError("disk full")
        self.rows += prediction.classes.shape[0]

    def close(self):
        self.state = "closed"
        return self.rows

    def abort(self):
        self.state = "aborted"


def _feed(opened, sinks, job) -> list:
    """One item through the run's loop (pipeline._through): what its sinks' ``close`` returned."""
    from tqdm import tqdm

    class Reader:
        def open(self, item, job):
            return opened

    with tqdm(total=0, disable=True) as bar:
        item = SimpleNamespace(name="item")
        return [r for _, r in pipeline._through("predict", [(0, item)], Reader(), job, bar, lambda *_: sinks)]


def _job() -> Job:
    meta = DataMeta(in_channels=1, num_classes=1, class_names=("a",))
    model = ModelInfo(TilePredictor(torch.nn.Identity(), "cpu"), meta, 1, False)
    return Job(model, options=InferenceOptions(tile=(4, 8), overlap=(0, 0), batch_size=2))


def test_sinks_run_on_their_own_thread_and_see_every_row():
    sinks = [Sink(), Sink()]
    assert _feed(Opened(40), sinks, _job()) == [40, 40]
    assert all(s.state == "closed" and threading.get_ident() not in s.threads for s in sinks)


def test_an_error_in_a_sink_stops_the_item_and_aborts_every_sink():
    sinks = [Sink(fail_at=8), Sink()]
    with pytest.raises(OSError, match="disk full"):
        _feed(Opened(400), sinks, _job())
    assert [s.state for s in sinks] == ["aborted", "aborted"]
    assert sinks[1].rows < 400  # the engine stopped early


def _toy_job(channels: int = 3) -> Job:
    meta = DataMeta(in_channels=channels, num_classes=2, class_names=("a", "b"))
    net = torch.nn.Conv2d(channels, 2, 1)
    return Job(ModelInfo(TilePredictor(net, "cpu"), meta, 2, False), options=InferenceOptions(None, (0, 0), 2))


def test_inputs_inside_the_output_folder_are_never_read_back_and_library_runs_draw_no_bar(tmp_path, capsys):
    import numpy as np

    from segsuite.domains.toy.io import NpyReader, NpyWriter

    folder = tmp_path / "in"
    (folder / "out").mkdir(parents=True)
    np.save(folder / "a.npy", np.zeros((3, 8, 8), np.float32))
    np.save(folder / "out" / "old.npy", np.zeros((3, 8, 8), np.float32))  # an earlier run's output
    job = replace(_toy_job(), progress=False)
    written = pipeline.run_predict(NpyReader(), NpyWriter(), job, folder, folder / "out")
    assert [p.name for p in written] == ["a.npy"] and "item(s)" not in capsys.readouterr().err
    with pytest.raises(DataError, match="every input lies inside the output folder"):
        pipeline.run_predict(NpyReader(), NpyWriter(), job, folder / "out", folder / "out")


def test_a_whole_item_is_finished_on_the_forward_pass_threads():
    """The sinks' thread has one torch thread while the engine runs; a whole item's task (its argmax and its sinks)
    comes after the engine's last batch, with nothing beside it, and runs on as many threads as the forward pass."""
    class Whole(Opened):
        def __init__(self):
            super().__init__(6)
            self.streaming = False

    class Threads(Sink):
        def update(self, prediction):
            self.threads.add(torch.get_num_threads())

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        sink = Threads()
        _feed(Whole(), [sink], _job())
    finally:
        torch.set_num_threads(before)
    assert sink.threads == {2}


def test_an_items_sinks_write_beside_the_next_items_engine():
    """Item 1's sinks are still writing while item 2's engine runs (they wait here for its first forward pass), on
    the one sinks' thread of the run, both items' results come back in order, and a failure of item 1's sinks found
    after item 2 started aborts both."""
    from segsuite.core.distributed import Ranks

    started = threading.Event()

    class Signal(torch.nn.Module):
        def forward(self, x):
            started.set()
            return x

    class Slow(Sink):
        def __init__(self, name, fail=False):
            super().__init__()
            self.name, self.fail, self.saw_next = name, fail, None

        def update(self, prediction):
            if self.name == "first":
                self.saw_next = started.wait(timeout=10)
                if self.fail:
                    raise OSError("disk full")
            super().update(prediction)

        def close(self):
            super().close()
            return self.name

    class Reader:
        def open(self, item, job):
            started.clear() if item.name == "first" else None
            whole = Opened(6)
            whole.streaming = False
            return whole

    class Writer:
        def __init__(self, fail=False):
            self.fail, self.sinks = fail, []

        def sink(self, item, opened, paths, job):
            self.sinks.append(Slow(item.name, self.fail and item.name == "first"))
            return self.sinks[-1]

    class Stage:
        def paths(self, plan):
            return plan

    job = replace(_job(), model=ModelInfo(TilePredictor(Signal(), "cpu"), _job().model.meta, 1, False))
    items = [SimpleNamespace(name="first"), SimpleNamespace(name="second")]
    writer = Writer()
    results, error = pipeline._predict_shard(Reader(), writer, job, items, [{}, {}], Stage(), Ranks())
    assert error is None and results == [(0, "first"), (1, "second")]
    assert writer.sinks[0].saw_next and [s.state for s in writer.sinks] == ["closed", "closed"]
    assert len(writer.sinks[0].threads | writer.sinks[1].threads) == 1  # one sinks' thread: never two items at once

    failing = Writer(fail=True)
    with pytest.raises(OSError, match="disk full"):
        pipeline._predict_shard(Reader(), failing, job, items, [{}, {}], Stage(), Ranks())
    assert [s.state for s in failing.sinks] == ["aborted", "aborted"]
