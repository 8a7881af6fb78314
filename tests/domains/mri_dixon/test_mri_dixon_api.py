"""MRI Dixon through the Python API (segsuite.core.api): a case's classes equal the CLI's label volume, arrays (C, D, H,
W) are normalised per case as files are."""

from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch

from segsuite.core.api import Segmenter
from segsuite.core.errors import DataError
from segsuite.core.predict import predict
from segsuite.domains.mri_dixon.cases import inference_channels
from segsuite.domains.mri_dixon.dataset import build_datasets
from tests.helpers import compose_config, untrained_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, phantom_root) -> Path:
    meta = build_datasets(str(phantom_root), patch_size=[32, 32])["train"].meta
    return untrained_checkpoint(tmp_path_factory.mktemp("mri_api") / "model.ckpt", meta, "mri_dixon")


@pytest.fixture(scope="module")
def segmenter(checkpoint) -> Segmenter:
    return Segmenter.from_checkpoint(checkpoint, device="cpu")


@pytest.fixture
def case(phantom_root) -> list[Path]:
    """The phantom's test case: one file per channel (nnU-Net names), on an oblique LPS-like grid."""
    return sorted((phantom_root / "imagesTs").glob("*_000?.nii.gz"))


def _canonical_channels(segmenter: Segmenter, case: list[Path]) -> np.ndarray:
    """The model's channels of ``case`` as one RAS+ array ``(C, X, Y, Z)`` (what the reader feeds the network)."""
    by_index = {int(p.name[-11:-7]): p for p in case}
    channels = list(segmenter.meta.get("dataset_channels", segmenter.meta["channels"]))
    names = inference_channels(segmenter.meta)
    images = [nibabel.as_closest_canonical(nibabel.load(by_index[channels.index(n)])) for n in names]
    return np.stack([np.asarray(image.dataobj, np.float32) for image in images])


def test_a_case_gives_the_classes_of_the_cli_label_volume(segmenter, checkpoint, case, tmp_path):
    output = tmp_path / "cli.nii.gz"
    predict(compose_config("predict", ["domain=mri_dixon", f"checkpoint={checkpoint}", f"input={case[0].parent}",
                                       f"output={output}", "device=cpu"]))
    cli = np.asarray(nibabel.load(output).dataobj)
    result = segmenter.predict(case[0].parent)
    np.testing.assert_array_equal(result.classes, cli)
    assert result.cell_unit == "mL" and result.cell_size == pytest.approx(3 * 3 * 6 / 1000)  # the phantom's voxels
    rows = result.class_table()
    assert sum(row["mL"] for row in rows) == pytest.approx(cli.size * 0.054)
    assert all(0 <= row["mean_fat_fraction"] <= 1 for row in rows if row["pixels"])
    np.testing.assert_array_equal(segmenter.predict([str(p) for p in case]).classes, cli)


def test_arrays_equal_the_case_on_its_ras_grid(segmenter, case, tmp_path):
    files = segmenter.predict_file(case[0].parent, tmp_path / "api.nii.gz")
    assert files == [tmp_path / "api.nii.gz"]
    expected = np.asarray(nibabel.as_closest_canonical(nibabel.load(files[0])).dataobj)
    array = _canonical_channels(segmenter, case)
    np.testing.assert_array_equal(segmenter.predict(array).classes, expected)
    np.testing.assert_array_equal(segmenter.predict(torch.from_numpy(array)).classes, expected)


def test_arrays_are_normalised_per_case(segmenter, case):
    array = _canonical_channels(segmenter, case)
    result = segmenter.predict(array, probabilities=True).probabilities  # (K, X, Y, Z)
    rescaled = segmenter.predict(3.0 * array + 50.0, probabilities=True).probabilities
    np.testing.assert_allclose(rescaled, result, atol=1e-4)  # clip + z-score: intensity units do not matter
    net = segmenter.job().model.predictor.model
    with torch.no_grad():  # the network fed the raw values of one axial slice: what skipping it would give
        raw = net(torch.from_numpy(np.ascontiguousarray(array[..., 6]))[None])[0].softmax(0).numpy()
    assert np.abs(raw - result[..., 6]).max() > 0.05


def test_bad_arrays_say_what_is_accepted(segmenter):
    names = inference_channels(segmenter.meta)
    with pytest.raises(DataError, match=rf"expected \(C, D, H, W\) with C={len(names)}, the channels {names[0]}"):
        segmenter.predict(np.zeros((len(names), 8, 8), np.float32))
