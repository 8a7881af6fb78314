"""Road scenes through the Python API (segsuite.core.api): a photo's classes equal the CLI's label file, arrays get the
checkpoint's normalisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segsuite.core.api import Segmenter
from segsuite.core.errors import DataError
from segsuite.core.predict import predict
from segsuite.domains.road_scene.datasets import build_datasets
from segsuite.domains.road_scene.synthetic import render_scene
from tests.helpers import compose_config, untrained_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, cityscapes_root) -> Path:
    """An untrained road-scene checkpoint with the synthetic training split's meta (normalisation, label ids)."""
    meta = json.loads(json.dumps(build_datasets(str(cityscapes_root))["train"].meta))
    return untrained_checkpoint(tmp_path_factory.mktemp("road_api") / "model.ckpt", meta, "road_scene")


@pytest.fixture(scope="module")
def segmenter(checkpoint) -> Segmenter:
    return Segmenter.from_checkpoint(checkpoint, device="cpu")


def _photo(tmp_path: Path) -> tuple[np.ndarray, Path]:
    rgb = render_scene((48, 96), 5)[0]
    Image.fromarray(rgb).save(tmp_path / "frame.png")
    return rgb, tmp_path / "frame.png"


def test_a_photo_gives_the_classes_of_the_cli_label_file(segmenter, checkpoint, tmp_path):
    _, path = _photo(tmp_path)
    predict(compose_config("predict", ["domain=road_scene", f"checkpoint={checkpoint}", f"input={path}",
                                       f"output={tmp_path / 'cli'}", "device=cpu"]))
    label_ids = np.asarray(Image.open(tmp_path / "cli" / "labels" / "frame.png"))  # Cityscapes label ids
    to_train = np.full(256, 255, np.int64)
    to_train[segmenter.meta["native_ids"]] = np.arange(len(segmenter.meta["native_ids"]))
    np.testing.assert_array_equal(segmenter.predict(path).classes, to_train[label_ids])
    written = segmenter.predict_file(path, tmp_path / "api")
    assert tmp_path / "api" / "labels" / "frame.png" in written
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "api" / "labels" / "frame.png")), label_ids)


def test_arrays_in_both_layouts_and_dtypes_equal_the_photo(segmenter, tmp_path):
    rgb, path = _photo(tmp_path)
    expected = segmenter.predict(path).classes
    for array in (rgb, rgb.transpose(2, 0, 1), rgb / 255.0, torch.from_numpy(rgb.transpose(2, 0, 1) / 255.0)):
        np.testing.assert_array_equal(segmenter.predict(array).classes, expected)


def test_arrays_are_normalised_as_in_training(segmenter, tmp_path):
    rgb, _ = _photo(tmp_path)
    norm = segmenter.meta["normalization"]
    by_hand = ((rgb / 255.0 - np.array(norm["mean"])) / np.array(norm["std"])).transpose(2, 0, 1)
    result = segmenter.predict(rgb, probabilities=True).probabilities
    np.testing.assert_allclose(result, _softmax(segmenter, by_hand), atol=1e-4)
    skipped = _softmax(segmenter, rgb.transpose(2, 0, 1) / 255.0)  # what an unnormalised array would give
    assert np.abs(result - skipped).max() > 0.05


def _softmax(segmenter: Segmenter, image: np.ndarray) -> np.ndarray:
    net = segmenter.job().model.predictor.model
    with torch.no_grad():
        return net(torch.as_tensor(image, dtype=torch.float32)[None])[0].softmax(0).numpy()


def test_bad_arrays_say_what_is_accepted(segmenter):
    with pytest.raises(DataError, match=r"expected an RGB image \(H, W, 3\) or \(3, H, W\)"):
        segmenter.predict(np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"expected uint8 \(0..255\) or float in \[0, 1\]"):
        segmenter.predict(np.full((8, 8, 3), 200.0))


def test_a_model_trained_at_half_scale_gets_half_scale_arrays_and_full_size_classes(cityscapes_root, tmp_path):
    meta = json.loads(json.dumps(build_datasets(str(cityscapes_root), train_scale=0.5)["train"].meta))
    half = Segmenter.from_checkpoint(untrained_checkpoint(tmp_path / "half.ckpt", meta, "road_scene"), device="cpu")
    rgb, path = _photo(tmp_path)
    result = half.predict(rgb, probabilities=True)
    assert result.classes.shape == (48, 96)
    np.testing.assert_array_equal(result.classes, half.predict(path).classes)
    full = Segmenter.from_checkpoint(untrained_checkpoint(tmp_path / "full.ckpt", {**meta, "train_scale": 1.0},
                                                          "road_scene"), device="cpu")
    assert np.abs(full.predict(rgb, probabilities=True).probabilities - result.probabilities).max() > 0.01
