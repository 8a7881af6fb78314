"""Land cover through the Python API (segsuite.core.api): a GeoTIFF's classes equal the CLI's class raster, arrays get
the checkpoint's bands, normalisation and nodata rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from segsuite.core.api import Segmenter
from segsuite.core.errors import DataError
from segsuite.core.predict import predict
from tests.helpers import compose_config, untrained_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, trained_meta) -> Path:
    return untrained_checkpoint(tmp_path_factory.mktemp("landcover_api") / "model.ckpt", trained_meta, "landcover")


@pytest.fixture(scope="module")
def segmenter(checkpoint) -> Segmenter:
    return Segmenter.from_checkpoint(checkpoint, device="cpu", overrides=["domain.inference.tile=[64,64]",
                                                                          "domain.inference.overlap=[16,16]"])


@pytest.fixture
def scene(synthetic_root) -> Path:
    return synthetic_root / "images" / "scene_000.tif"  # 96x96, uint16, nodata 0 on an 8-pixel border


def test_a_scene_gives_the_classes_of_the_cli_raster(segmenter, checkpoint, scene, tmp_path):
    predict(compose_config("predict", ["domain=landcover", f"checkpoint={checkpoint}", f"input={scene}",
                                       f"output={tmp_path / 'cli.tif'}", "device=cpu", "domain.inference.tile=[64,64]",
                                       "domain.inference.overlap=[16,16]"]))
    with rasterio.open(tmp_path / "cli.tif") as src:
        cli = src.read(1)
    result = segmenter.predict(scene)
    np.testing.assert_array_equal(result.classes, cli)
    assert (result.classes[:8] == 255).all() and (result.classes[8:-8, 8:-8] < 6).all()  # nodata border
    assert result.cell_size == pytest.approx(0.01) and result.cell_unit == "ha"  # 10 m pixels, UTM
    assert sum(row["ha"] for row in result.class_table()) == pytest.approx(0.01 * 80 * 80)
    assert tmp_path / "api.tif" in segmenter.predict_file(scene, tmp_path / "api.tif")


def test_arrays_equal_files_with_nodata_masked_or_nan(segmenter, scene):
    expected = segmenter.predict(scene).classes
    with rasterio.open(scene) as src:
        masked = src.read(masked=True)  # (4, 96, 96) uint16, the nodata border masked
    np.testing.assert_array_equal(segmenter.predict(masked).classes, expected)
    with_nan = np.where(masked.mask, np.nan, masked.data.astype(np.float32))
    np.testing.assert_array_equal(segmenter.predict(torch.from_numpy(with_nan)).classes, expected)


def test_arrays_are_normalised_with_the_training_statistics(segmenter, scene):
    with rasterio.open(scene) as src:
        raw = src.read(window=((8, 72), (8, 72))).astype(np.float32)  # 64x64 without nodata: one window
    norm = segmenter.meta["normalization"]
    by_hand = (raw - np.array(norm["mean"])[:, None, None]) / np.array(norm["std"])[:, None, None]
    result = segmenter.predict(raw, probabilities=True).probabilities
    np.testing.assert_allclose(result, _softmax(segmenter, by_hand), atol=1e-4)
    assert np.abs(result - _softmax(segmenter, raw)).max() > 0.05  # what skipping the normalisation would give


def _softmax(segmenter: Segmenter, image: np.ndarray) -> np.ndarray:
    net = segmenter.job().model.predictor.model
    with torch.no_grad():
        return net(torch.as_tensor(image, dtype=torch.float32)[None])[0].softmax(0).numpy()


def test_bad_arrays_say_what_is_accepted(segmenter):
    with pytest.raises(DataError, match=r"shape \(3, 8, 8\): expected \(C, H, W\) with C=4"):
        segmenter.predict(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(DataError, match="only nodata"):
        segmenter.predict(np.full((4, 8, 8), np.nan, np.float32))


def test_a_raster_too_large_for_the_page_comes_back_strided_with_the_full_files(segmenter, scene, tmp_path):
    heard: list[float] = []
    result, files = segmenter.predict_file_with_preview(scene, tmp_path / "out.tif", max_pixels=1000,
                                                        progress=heard.append)
    assert result.stride == 4  # ceil(sqrt(96 * 96 / 1000))
    assert heard == sorted(heard) and heard[-1] == 1.0 and len(heard) > 1  # row blocks, as they finish
    with rasterio.open(tmp_path / "out.tif") as src:
        full = src.read(1)
    assert tmp_path / "out.tif" in files and full.shape == (96, 96)
    np.testing.assert_array_equal(result.classes, full[::4, ::4])
