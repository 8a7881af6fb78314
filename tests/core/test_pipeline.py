"""The pipeline's sink thread: predictions are written on their own thread, errors there stop the item and every
sink is aborted."""

import threading

import pytest
import torch

from segsuite.core import pipeline
from segsuite.core.contracts import DataMeta, Job, ModelInfo
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


def _job() -> Job:
    meta = DataMeta(in_channels=1, num_classes=1, class_names=("a",))
    model = ModelInfo(TilePredictor(torch.nn.Identity(), "cpu"), meta, 1, False)
    return Job(model, options=InferenceOptions(tile=(4, 8), overlap=(0, 0), batch_size=2))


def test_sinks_run_on_their_own_thread_and_see_every_row():
    sinks = [Sink(), Sink()]
    assert pipeline._feed(None, Opened(40), sinks, _job(), False) == [40, 40]
    assert all(s.state == "closed" and threading.get_ident() not in s.threads for s in sinks)


def test_an_error_in_a_sink_stops_the_item_and_aborts_every_sink():
    sinks = [Sink(fail_at=8), Sink()]
    with pytest.raises(OSError, match="disk full"):
        pipeline._feed(None, Opened(400), sinks, _job(), False)
    assert [s.state for s in sinks] == ["aborted", "aborted"]
    assert sinks[1].rows < 400  # the engine stopped early
