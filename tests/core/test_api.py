"""The Python API (segsuite.core.api): the same answers as the command line, for files and arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from segsuite.core.api import Collector, Result, Segmenter
from segsuite.core.contracts import DataMeta, Job, ModelInfo, Prediction
from segsuite.core.errors import DataError
from segsuite.core.predict import predict
from segsuite.domains.toy.data import toy_sample
from tests.helpers import compose_config


@pytest.fixture(scope="module")
def segmenter(toy_run) -> Segmenter:
    return Segmenter.from_checkpoint(toy_run / "checkpoints" / "last.ckpt", device="cpu")


def _image(tmp_path: Path, size: int = 70) -> tuple[np.ndarray, Path]:
    image = toy_sample(7, size, 3, 3, 255)[0]
    np.save(tmp_path / "img.npy", image)
    return image, tmp_path / "img.npy"


def test_predict_of_a_file_equals_the_cli_output(segmenter, toy_run, tmp_path):
    _, path = _image(tmp_path)
    cfg = compose_config("predict", ["domain=toy", f"checkpoint={toy_run / 'checkpoints' / 'last.ckpt'}",
                                     f"input={path}", f"output={tmp_path / 'cli.npy'}", "device=cpu"])
    predict(cfg)  # what scripts/predict.py runs
    result = segmenter.predict(path)
    np.testing.assert_array_equal(result.classes, np.load(tmp_path / "cli.npy"))
    assert segmenter.predict_file(path, tmp_path / "api.npy") == [tmp_path / "api.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "api.npy"), np.load(tmp_path / "cli.npy"))


def test_arrays_and_tensors_equal_files(segmenter, tmp_path):
    image, path = _image(tmp_path)
    expected = segmenter.predict(path).classes
    np.testing.assert_array_equal(segmenter.predict(image).classes, expected)
    result = segmenter.predict(torch.from_numpy(image), probabilities=True)
    np.testing.assert_array_equal(result.classes, expected)
    assert result.probabilities.shape == (3, 70, 70)
    np.testing.assert_allclose(result.probabilities.sum(0), 1, atol=1e-5)
    np.testing.assert_array_equal(result.probabilities.argmax(0), expected)


def test_result_colours_and_legend(segmenter, tmp_path):
    image, _ = _image(tmp_path)
    result = segmenter.predict(image)
    rgb = result.colorize()
    assert rgb.shape == (70, 70, 3) and rgb.dtype == np.uint8
    legend = dict(result.legend())
    assert list(legend) == ["background", "class1", "class2"]
    for k, name in enumerate(legend):
        assert (rgb[result.classes == k] == legend[name]).all()
    assert sum(row["pixels"] for row in result.class_table()) == 70 * 70


def test_bad_inputs_are_one_line_errors(segmenter, tmp_path):
    with pytest.raises(DataError, match=r"shape \(2, 70, 70\); expected \(C, H, W\) with C=3"):
        segmenter.predict(np.zeros((2, 70, 70), np.float32))
    for name in ("a", "b"):
        np.save(tmp_path / f"{name}.npy", np.zeros((3, 8, 8), np.float32))
    with pytest.raises(DataError, match="holds 2 inputs; predict\\(\\) takes one"):
        segmenter.predict(tmp_path)


def test_a_strided_preview_of_row_blocks_keeps_every_stride_th_pixel():
    meta = {"in_channels": 1, "num_classes": 3, "class_names": ["a", "b", "c"]}
    job = Job(ModelInfo(predictor=None, meta=DataMeta.from_dict(meta), channels=3, border=False))
    logits = torch.randn(3, 50, 40)
    classes = logits.argmax(0).to(torch.uint8).numpy()
    covered = np.ones((50, 40), bool)
    covered[:, -5:] = False  # a skipped nodata window
    heard: list[float] = []
    collector = Collector(job, stride=3, progress=heard.append, rows=50)
    for row0 in range(0, 50, 16):  # row blocks as a streaming item hands them out
        rows = slice(row0, row0 + 16)
        collector.update(Prediction(logits[:, rows], classes[rows], covered=covered[rows], row0=row0, num_classes=3))
    result: Result = collector.close()
    expected = np.where(covered, classes, 255)[::3, ::3]
    np.testing.assert_array_equal(result.classes, expected)
    assert result.stride == 3
    assert heard == [16 / 50, 32 / 50, 48 / 50, 1.0]  # the fraction of rows done, block by block


class _Described:
    """An opened item that says where it has data, how large a pixel is and what values to average."""

    def valid(self, prediction: Prediction) -> np.ndarray:
        valid = np.ones(prediction.classes.shape, bool)
        valid[0] = False  # the first row is nodata
        return valid

    def cell_size(self) -> tuple[float, str]:
        return 0.5, "ha"

    def values(self) -> dict[str, np.ndarray]:
        return {"fat_fraction": np.arange(24, dtype=np.float64).reshape(4, 6)}


def test_the_opened_item_gives_nodata_areas_and_class_means():
    job = Job(ModelInfo(predictor=None, meta=DataMeta.from_dict({"in_channels": 1, "num_classes": 2,
                                                                 "class_names": ["a", "b"]}), channels=2, border=False))
    classes = np.zeros((4, 6), np.uint8)
    classes[:, 3:] = 1
    collector = Collector(job, opened=_Described())
    collector.update(Prediction(torch.zeros(2, 4, 6), classes, num_classes=2))
    result = collector.close()
    assert (result.classes[0] == 255).all() and (result.classes[1:] == classes[1:]).all()
    rows = {row["class"]: row for row in result.class_table()}
    assert rows["a"]["pixels"] == 9 and rows["a"]["ha"] == 4.5 and rows["b"]["ha"] == 4.5
    assert rows["a"]["mean_fat_fraction"] == np.mean([6, 7, 8, 12, 13, 14, 18, 19, 20])
