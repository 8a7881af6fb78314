"""``domain.inference`` as the predict and evaluate jobs read it: ``tile: patch`` is the model's training patch."""

import pytest

from segsuite.core.contracts import DataMeta
from segsuite.core.errors import ConfigError
from segsuite.core.predict import inference_options

META = DataMeta.from_dict({"in_channels": 3, "num_classes": 2, "class_names": ["a", "b"], "patch_size": [64, 96]})


def test_tile_patch_is_the_training_patch_a_quarter_overlapping():
    options = inference_options({"tile": "patch", "overlap": None, "batch_size": 4, "blend": "gaussian"}, META)
    assert options.tile == (64, 96) and options.overlap == (16, 24) and options.batch_size == 4


def test_an_explicit_overlap_stays():
    assert inference_options({"tile": "patch", "overlap": [32, 32]}, META).overlap == (32, 32)


def test_a_model_without_a_patch_names_the_fix():
    meta = DataMeta.from_dict({"in_channels": 3, "num_classes": 2, "class_names": ["a", "b"]})
    with pytest.raises(ConfigError, match=r"domain.inference.tile=\[512,512\]"):
        inference_options({"tile": "patch"}, meta)
