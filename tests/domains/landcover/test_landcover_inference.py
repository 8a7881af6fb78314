"""Prediction-time reading: same normalisation as training, nodata skipping, and a streamed write."""

import json

import numpy as np
import pytest
import rasterio

from segsuite.core.errors import DataError
from segsuite.domains.landcover.classes import DEFAULT_CLASSES
from segsuite.domains.landcover.dataset import build_datasets
from segsuite.domains.landcover.rasterout import RasterWriter
from segsuite.domains.landcover.reader import RasterSource


def test_source_reads_like_validation_samples(synthetic_root):
    ds = build_datasets(str(synthetic_root), patch_size=32, val_stems=["scene_001"], bands=[2, 4])
    meta = json.loads(json.dumps(ds["train"].meta))  # as restored from a checkpoint
    scene, box, _, _ = ds["val"].items[4]
    with RasterSource(scene.image, meta) as source:
        assert source.shape == (96, 96)
        tile = source.read((box.row0, box.col0, 32, 32))
    np.testing.assert_array_equal(tile, ds["val"][4]["image"].numpy())
    assert tile.shape == (2, 32, 32) and tile.dtype == np.float32
    with pytest.raises(DataError, match="bands \\[7\\] not available"):
        RasterSource(scene.image, {**meta, "bands": [1, 7]})


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_streamed_prediction_keeps_geometry_and_input_nodata(tif, tmp_path, dtype):
    image = np.random.default_rng(0).integers(1, 100, (2, 40, 56)).astype(dtype)
    image[:, :16, :16] = 0  # a whole 16 px tile of nodata: skipped
    image[:, 30, 50] = 0  # a single nodata pixel
    if dtype == "float32":
        image[1, 35, 5] = np.nan  # NaN counts as nodata too
    path = tif("scene.tif", image, nodata=0)
    meta = {"bands": [1, 2], "normalization": {"mean": [50.0, 50.0], "std": [10.0, 10.0]}}
    with RasterSource(path, meta) as source:
        windows = [(r, c, 16, 16) for r in (0, 16, 24) for c in (0, 16, 32, 40)]
        skipped = {w for w in windows if source.skip(w)}
        assert skipped == {(0, 0, 16, 16)}
        with RasterWriter(tmp_path / "pred.tif", source.profile, colormap=DEFAULT_CLASSES.colormap()) as out:
            for row0 in range(0, 40, 8):  # the engine hands out finished row blocks in order
                out.write_block(row0, 0, np.full((8, 56), 3), source.load((row0, 0, 8, 56))[1])
    invalid = (image == 0).any(axis=0) | np.isnan(image).any(axis=0)
    with rasterio.open(path) as src, rasterio.open(tmp_path / "pred.tif") as dst:
        assert dst.crs == src.crs and dst.transform == src.transform and dst.shape == src.shape
        pred = dst.read(1)
    np.testing.assert_array_equal(pred == 255, invalid)
    assert (pred[~invalid] == 3).all()
