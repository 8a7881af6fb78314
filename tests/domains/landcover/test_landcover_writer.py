"""Streaming GeoTIFF writer: exact geometry, nodata, colour table, tiling, compression, COG, no partial file.
(Refusing to overwrite and unwritable folders: the pipeline's staging, tested through predict.)"""

import os

import numpy as np
import pytest
import rasterio
from affine import Affine

from segsuite.core.errors import DataError
from segsuite.domains.landcover.classes import DEFAULT_CLASSES
from segsuite.domains.landcover.rasterout import RasterWriter

# A rotated, non-round transform in Lambert-93: any rounding or re-derivation would show.
ODD = Affine(0.3333333333333, 0.0123456789, 651234.56789, 0.0098765432, -0.3333333333333, 6862345.4321)


@pytest.fixture
def source(tif):
    data = np.random.default_rng(0).integers(1, 1000, (3, 70, 90)).astype(np.uint16)
    data[:, :4] = 0
    return tif("in.tif", data, nodata=0, crs="EPSG:2154", transform=ODD)


def _write(path, src_path, labels, valid, chunk=7, **kw):
    with rasterio.open(src_path) as src, RasterWriter(path, src.profile, **kw) as out:
        for r in range(0, labels.shape[-2], chunk):
            out.write_block(r, 0, labels[..., r : r + chunk, :], valid[r : r + chunk])


def test_geometry_nodata_colour_table_tiling(source, tmp_path):
    labels = np.random.default_rng(1).integers(0, 6, (70, 90))
    valid = np.ones((70, 90), bool)
    valid[:4] = False  # the input's nodata rows
    out = tmp_path / "pred.tif"
    _write(out, source, labels, valid, colormap=DEFAULT_CLASSES.colormap(), blocksize=256)
    with rasterio.open(source) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.crs.to_wkt() == src.crs.to_wkt()
        assert dst.transform == src.transform  # exact, not approximate
        assert (dst.width, dst.height) == (src.width, src.height)
        assert dst.profile["tiled"] and dst.block_shapes == [(256, 256)]
        assert dst.profile["compress"] == "deflate" and dst.dtypes == ("uint8",) and dst.nodata == 255
        colormap = dst.colormap(1)
        assert all(colormap[i] == (*c, 255) for i, c in enumerate(DEFAULT_CLASSES.colors))
        got = dst.read(1)
        np.testing.assert_array_equal(got[4:], labels[4:])
        assert (got[:4] == 255).all() and (dst.read_masks(1)[:4] == 0).all()
        np.testing.assert_array_equal(src.read_masks(1) > 0, dst.read_masks(1) > 0)
    assert sorted(os.listdir(tmp_path)) == ["in.tif", "pred.tif"]  # no temp files left


def test_row_chunking_does_not_change_output(source, tmp_path):
    labels = np.random.default_rng(2).integers(0, 6, (70, 90))
    valid = np.ones((70, 90), bool)
    for chunk in (1, 16, 33, 70):
        _write(tmp_path / f"c{chunk}.tif", source, labels, valid, chunk=chunk, blocksize=16)
        with rasterio.open(tmp_path / f"c{chunk}.tif") as dst:
            np.testing.assert_array_equal(dst.read(1), labels)


@pytest.mark.parametrize("cog", [False, True])
def test_class_ids_are_deflated_without_a_predictor_and_measurements_with_one(source, tmp_path, cog):
    """Differences of class ids only add symbols: a categorical raster (the class map) has no DEFLATE predictor, in the
    tiled file and in its COG; other integer rasters keep the horizontal one. The values are the same either way."""
    labels = np.random.default_rng(5).integers(0, 6, (70, 90))
    valid = np.ones((70, 90), bool)
    for categorical in (True, False):
        out = tmp_path / f"{categorical}.tif"
        _write(out, source, labels, valid, chunk=70, cog=cog, blocksize=32, categorical=categorical)
        with rasterio.open(out) as dst:
            assert dst.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == (None if categorical else "2")
            np.testing.assert_array_equal(dst.read(1), labels)


def test_multiband_float_output_with_descriptions(source, tmp_path):
    probs = np.random.default_rng(3).random((2, 70, 90)).astype(np.float32)
    valid = np.ones((70, 90), bool)
    valid[10, 10] = False
    _write(tmp_path / "p.tif", source, probs, valid, count=2, dtype="float32", nodata=-1.0, descriptions=["a", "b"])
    with rasterio.open(tmp_path / "p.tif") as dst:
        out = dst.read()
        assert dst.descriptions == ("a", "b") and dst.nodata == -1.0
    assert (out[:, 10, 10] == -1).all()
    out[:, 10, 10] = probs[:, 10, 10]
    np.testing.assert_array_equal(out, probs)


def test_cog_output_is_valid_cog_with_same_geometry(tif, tmp_path):
    labels = np.random.default_rng(4).integers(0, 6, (300, 260)).astype(np.uint8)
    src_path = tif("in.tif", labels, crs="EPSG:32631")
    out = tmp_path / "pred_cog.tif"
    _write(
        out,
        src_path,
        labels,
        np.ones(labels.shape, bool),
        chunk=100,
        cog=True,
        blocksize=128,
        colormap=DEFAULT_CLASSES.colormap(),
    )
    with rasterio.open(src_path) as src, rasterio.open(out) as dst:
        assert dst.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert dst.overviews(1) == [2, 4]  # built by the COG driver down to one 128 px tile
        assert dst.block_shapes == [(128, 128)] and dst.profile["compress"] == "deflate"
        assert dst.crs == src.crs and dst.transform == src.transform and dst.shape == src.shape
        assert dst.colormap(1)[5] == (*DEFAULT_CLASSES.colors[5], 255)
        np.testing.assert_array_equal(dst.read(1), labels)
    assert sorted(os.listdir(tmp_path)) == ["in.tif", "pred_cog.tif"]


def test_error_leaves_no_partial_file(source, tmp_path):
    out = tmp_path / "pred.tif"
    with pytest.raises(RuntimeError, match="boom"), rasterio.open(source) as src:
        with RasterWriter(out, src.profile) as writer:
            writer.write_block(0, 0, np.zeros((10, 90), np.uint8))
            raise RuntimeError("boom")
    with pytest.raises(DataError, match="incomplete output, 10 of 70 rows"):
        with RasterWriter(out, source) as writer:
            writer.write_block(0, 0, np.zeros((10, 90), np.uint8))
    with pytest.raises(ValueError, match="expected row 0, got 5"):
        with RasterWriter(out, source) as writer:
            writer.write_block(5, 0, np.zeros((10, 90), np.uint8))
    assert sorted(os.listdir(tmp_path)) == ["in.tif"]


def test_a_missing_folder_is_created(source, tmp_path):
    with RasterWriter(tmp_path / "new" / "pred.tif", source) as writer:
        writer.write_block(0, 0, np.ones((70, 90), np.uint8))
    with rasterio.open(tmp_path / "new" / "pred.tif") as dst:
        assert (dst.read(1) == 1).all()
