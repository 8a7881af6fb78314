"""Options are checked once, where they are made, and passed through: the engine takes an InferenceOptions as it is,
the keyword form is checked into one, and the pipeline makes none of its own."""

import numpy as np
import pytest
import torch

from segsuite.core import pipeline
from segsuite.core.contracts import DataMeta, Job, ModelInfo
from segsuite.core.errors import ConfigError
from segsuite.core.inference import ArraySource, InferenceOptions, TilePredictor, sliding_window


@pytest.fixture
def checks(monkeypatch):
    """Counts InferenceOptions checks from here on."""
    calls = []
    check = InferenceOptions.__post_init__

    def counted(self):
        calls.append(self)
        check(self)

    monkeypatch.setattr(InferenceOptions, "__post_init__", counted)
    return calls


def _blocks(image, **kwargs):
    return list(sliding_window(TilePredictor(torch.nn.Identity(), "cpu"), [ArraySource(image)], 2, **kwargs))


def test_the_engine_takes_options_as_they_are_and_checks_the_keyword_form_once(checks):
    image = np.random.default_rng(0).normal(size=(2, 37, 29)).astype(np.float32)
    options = InferenceOptions((16, 12), (4, 3), 3, "cosine", readers=2)
    checks.clear()
    given = _blocks(image, options=options)
    assert checks == []
    keywords = _blocks(image, tile=(16, 12), overlap=(4, 3), batch_size=3, blend="cosine", readers=2)
    assert checks == [options]
    assert all(torch.equal(a[2], b[2]) for a, b in zip(given, keywords)) and len(given) == len(keywords)


def test_options_and_keywords_together_are_refused():
    with pytest.raises(TypeError, match="not both"):
        _blocks(np.zeros((2, 8, 8), np.float32), tile=(4, 4), options=InferenceOptions())
    with pytest.raises(ConfigError, match="readers=0"):
        _blocks(np.zeros((2, 8, 8), np.float32), readers=0)


def test_whole_items_get_one_window_as_large_as_the_largest_source():
    shapes = [(9, 7), (5, 11)]
    predictor, seen = TilePredictor(torch.nn.Identity(), "cpu"), []
    predictor.model.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape)))
    images = [np.full((1, *s), i + 1, np.float32) for i, s in enumerate(shapes)]
    blocks = list(sliding_window(predictor, [ArraySource(x) for x in images], 1,
                                 options=InferenceOptions(None, (0, 0), 2)))
    assert [(i, r, tuple(b.shape[1:])) for i, r, b, _ in blocks] == [(0, 0, (9, 7)), (1, 0, (5, 11))]
    assert sorted(s[2:] for s in seen) == [(5, 11), (9, 7)]  # each source one window, clipped to its size


class Opened:
    def __init__(self) -> None:
        self.sources = [ArraySource(np.zeros((1, 20, 8), np.float32))]
        self.streaming = True


def test_the_pipeline_passes_the_jobs_options_through(checks):
    meta = DataMeta(in_channels=1, num_classes=1, class_names=("a",))
    job = Job(ModelInfo(TilePredictor(torch.nn.Identity(), "cpu"), meta, 1, False),
              options=InferenceOptions(tile=(8, 8), overlap=(2, 0), batch_size=2))
    checks.clear()
    predictions = list(pipeline.predict_item(Opened(), job))
    assert checks == [] and sum(p.classes.shape[0] for p in predictions) == 20
