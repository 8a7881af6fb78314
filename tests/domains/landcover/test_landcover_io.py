"""Reading: dtypes, nodata, NaN, masks, alpha bands, band selection, edge windows, statistics, file checks."""

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from segsuite.core.errors import DataError
from segsuite.domains.landcover.dataset import build_datasets
from segsuite.domains.landcover.io import (
    _representable,
    alpha_band,
    open_raster,
    read_label_window,
    read_window,
    valid_pixels,
)
from segsuite.domains.landcover.rasterstats import band_stats, check_pair
from tests.domains.landcover.conftest import write_tif

TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)  # as written by the conftest ``tif`` fixture


@pytest.mark.parametrize(("dtype", "nodata"), [("uint8", 0), ("uint16", 0), ("int16", -9999), ("float32", -1.5)])
def test_read_window_dtypes_and_nodata(tif, dtype, nodata):
    data = (np.arange(3 * 20 * 24).reshape(3, 20, 24) % 200 + 1).astype(dtype)
    data[:, 2, 3] = nodata  # nodata in every band
    data[1, 5, 6] = nodata  # nodata in one band only: the pixel is still invalid
    with open_raster(tif("a.tif", data, nodata=nodata)) as src:
        image, valid = read_window(src, Window(0, 0, 24, 20))
    assert image.dtype == np.float32 and image.shape == (3, 20, 24) and valid.shape == (20, 24)
    expected_valid = np.ones((20, 24), bool)
    expected_valid[2, 3] = expected_valid[5, 6] = False
    np.testing.assert_array_equal(valid, expected_valid)
    np.testing.assert_array_equal(image[:, valid], data[:, valid].astype(np.float32))
    assert (image[:, ~valid] == 0).all()


def test_nan_is_nodata_for_floats(tif):
    data = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    data[0, 4, 4] = np.nan
    data[1, 7, 1] = np.inf
    for name, nodata in (("no_nodata.tif", None), ("nan_nodata.tif", float("nan"))):
        with open_raster(tif(name, data, nodata=nodata)) as src:
            image, valid = read_window(src, Window(0, 0, 16, 16))
        assert not valid[4, 4] and not valid[7, 1] and valid.sum() == 16 * 16 - 2
        assert np.isfinite(image).all()


def test_internal_mask_is_respected(tif, tmp_path):
    data = np.full((1, 16, 16), 7, np.uint16)
    path = tif("m.tif", data)
    mask = np.full((16, 16), 255, np.uint8)
    mask[:4] = 0
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "r+") as dst:
        dst.write_mask(mask)
    with open_raster(path) as src:
        _, valid = read_window(src, Window(0, 0, 16, 16))
    np.testing.assert_array_equal(valid, mask > 0)


def test_band_selection_order_and_errors(tif):
    data = np.stack([np.full((8, 8), v, np.uint8) for v in (10, 20, 30, 40)])
    with open_raster(tif("b.tif", data)) as src:
        image, _ = read_window(src, Window(0, 0, 8, 8), bands=[3, 1])
        assert image[:, 0, 0].tolist() == [30.0, 10.0]
        with pytest.raises(DataError, match=r"bands \[5\] not available; this raster has bands 1..4"):
            read_window(src, Window(0, 0, 8, 8), bands=[1, 5])


def test_window_past_the_edge_is_invalid(tif):
    data = np.arange(10 * 12, dtype=np.uint16).reshape(10, 12) + 1
    labels = np.ones((10, 12), np.uint8)
    with open_raster(tif("e.tif", data)) as src, open_raster(tif("l.tif", labels)) as lbl:
        image, valid = read_window(src, Window(8, -3, 8, 8))  # cols 8..15, rows -3..4
        lab, lab_valid = read_label_window(lbl, Window(8, -3, 8, 8))
        outside, outside_valid = read_window(src, Window(100, 100, 4, 4))
    np.testing.assert_array_equal(image[0, 3:, :4], data[:5, 8:12])
    assert valid[3:, :4].all() and not valid[:3].any() and not valid[:, 4:].any()
    assert (image[0][~valid] == 0).all()
    np.testing.assert_array_equal(lab_valid, valid)
    assert (lab[lab_valid] == 1).all() and (lab[~lab_valid] == 0).all()
    assert not outside_valid.any() and not outside.any()


def test_band_stats_exact_over_valid_pixels(tif):
    rng = np.random.default_rng(1)
    data = rng.integers(1, 5000, (3, 40, 50)).astype(np.uint16)
    data[:, :5] = 0  # nodata rows
    path = tif("s.tif", data, nodata=0)
    cells = [(path, Window(c, r, 16, 16)) for r in range(0, 40, 16) for c in range(0, 50, 16)]
    stats = band_stats(cells, bands=[1, 3])
    valid = data[0] > 0
    ref = data[[0, 2]][:, valid].astype(np.float64)
    np.testing.assert_allclose(stats["mean"], ref.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats["std"], ref.std(axis=1), rtol=1e-12)
    assert stats["pixels"] == valid.sum()


def test_band_stats_samples_within_budget(tif):
    rng = np.random.default_rng(2)
    data = rng.normal(1000, 50, (1, 128, 128)).astype(np.float32)
    path = tif("big.tif", data)
    cells = [(path, Window(c, r, 16, 16)) for r in range(0, 128, 16) for c in range(0, 128, 16)]
    stats = band_stats(cells, max_pixels=16 * 16 * 8, seed=5)
    assert stats["pixels"] == 16 * 16 * 8  # 8 of the 64 cells were read
    assert stats == band_stats(cells, max_pixels=16 * 16 * 8, seed=5)  # deterministic
    assert abs(stats["mean"][0] - 1000) < 10 and abs(stats["std"][0] - 50) < 5


def test_unreadable_truncated_and_crs_errors(tif, tmp_path):
    with pytest.raises(DataError, match="raster not found"):
        open_raster(tmp_path / "missing.tif")
    text = tmp_path / "notes.tif"
    text.write_text("not a tiff")
    with pytest.raises(DataError, match="notes.tif: not a readable raster"):
        open_raster(text)
    good = tif(
        "full.tif", np.random.default_rng(0).integers(0, 60000, (2, 64, 64)).astype(np.uint16), compress="deflate"
    )
    truncated = tmp_path / "cut.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
    with pytest.raises(DataError, match="cut.tif"):
        open_raster(truncated)
    with pytest.raises(DataError, match="nocrs.tif: raster has no CRS"):
        open_raster(tif("nocrs.tif", np.ones((4, 4), np.uint8), crs=None))


def test_pair_checks_name_each_difference(tif):
    img = tif("img.tif", np.ones((2, 16, 16), np.uint8))
    check_pair(img, tif("ok.tif", np.zeros((16, 16), np.uint8)))
    cases = {
        "crs": (
            tif("crs.tif", np.zeros((16, 16), np.uint8), crs="EPSG:32632"),
            "CRS: image EPSG:32631 vs label EPSG:32632",
        ),
        "transform": (
            tif("tr.tif", np.zeros((16, 16), np.uint8), transform=TRANSFORM @ Affine.translation(1, 0)),
            "transform: image (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0) vs label (10.0, 0.0, 500010.0,",
        ),
        "size": (tif("size.tif", np.zeros((15, 16), np.uint8)), "width x height: image 16x16 vs label 16x15"),
    }
    for path, message in cases.values():
        with pytest.raises(DataError) as err:
            check_pair(img, path)
        assert message in str(err.value) and str(path) in str(err.value)
    with pytest.raises(DataError, match="1 integer band of class ids; got 1 band\\(s\\) of float32"):
        check_pair(img, tif("float.tif", np.zeros((16, 16), np.float32)))


def test_label_values_outside_class_map(tmp_path):
    """The dataset builder scans every label raster; pixels under the label's nodata are not checked."""
    labels = np.zeros((16, 16), np.uint8)
    labels[0, :3] = [7, 9, 255]  # 255 = ignore index: accepted
    labels[5, 5] = 200
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    write_tif(tmp_path / "images" / "x.tif", np.ones((1, 16, 16), np.uint8))
    path = tmp_path / "labels" / "x.tif"
    for nodata, bad in ((None, "7, 9, 200"), (200, "7, 9")):
        write_tif(path, labels, nodata=nodata)
        with pytest.raises(DataError, match=rf"label values {bad} are not in the class map") as err:
            build_datasets(str(tmp_path), patch_size=8, holdout_fraction=0.5)
        assert str(path) in str(err.value)
    labels[0, :2] = 1
    write_tif(path, labels, nodata=200)
    assert build_datasets(str(tmp_path), patch_size=8, holdout_fraction=0.5)["train"].regions


@pytest.mark.parametrize("dtype,nodata", [("int16", 0.5), ("uint16", 7), ("float32", -9999.0)])
def test_nodata_mask_agrees_with_gdal(tif, dtype, nodata):
    data = np.random.default_rng(0).integers(10, 100, (4, 9, 11)).astype(dtype)
    holds_nodata = _representable(nodata, np.dtype(dtype))
    if holds_nodata:
        data[1, 3, 4] = data[2, 5, 6] = nodata
    path = tif("n.tif", data, nodata=nodata, block=None)
    with rasterio.open(path) as src:
        _, valid = read_window(src, Window(0, 0, 11, 9))
        np.testing.assert_array_equal(valid, (src.read_masks() > 0).all(axis=0))  # GDAL's own mask
    assert (~valid).sum() == (2 if holds_nodata else 0)


def _rgbn(tif, name, **extra):
    """A 4-band uint8 image written with rasterio's defaults (GDAL then flags band 4 as alpha); NIR 0 on rows 0-3."""
    data = np.random.default_rng(3).integers(1, 255, (4, 16, 16)).astype(np.uint8)
    data[3, :4] = 0
    return tif(name, data, **extra), data


def test_rgbn_with_default_options_keeps_nir_zeros_valid(tif):
    path, data = _rgbn(tif, "rgbn.tif")
    with open_raster(path) as src:
        assert alpha_band(src) == 4  # what GDAL makes of it
        image, valid = read_window(src, Window(0, 0, 16, 16))
        assert valid.all() and (image[3, :4] == 0).all()
        np.testing.assert_array_equal(image, data.astype(np.float32))
        assert valid_pixels(src, Window(0, 0, 16, 16), [1, 2, 3, 4], data).all()
        # the same file as RGBA imagery: read as RGB the alpha band masks, or when the option says so
        _, rgb_valid = read_window(src, Window(0, 0, 16, 16), bands=[1, 2, 3])
        _, asked_valid = read_window(src, Window(0, 0, 16, 16), alpha_is_mask=True)
        _, refused_valid = read_window(src, Window(0, 0, 16, 16), bands=[1, 2, 3], alpha_is_mask=False)
    assert not rgb_valid[:4].any() and rgb_valid[4:].all()
    np.testing.assert_array_equal(asked_valid, rgb_valid)
    assert refused_valid.all()


def test_rgbn_nodata_value_and_internal_mask_still_mark_nodata(tif):
    path, data = _rgbn(tif, "rgbn_nodata.tif", nodata=0)  # a declared nodata value: NIR 0 is nodata again
    with open_raster(path) as src:
        _, valid = read_window(src, Window(0, 0, 16, 16))
    assert not valid[:4].any() and valid[4:].all()
    path, _ = _rgbn(tif, "rgbn_mask.tif")
    mask = np.full((16, 16), 255, np.uint8)
    mask[:, :5] = 0
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "r+") as dst:
        dst.write_mask(mask)
    with open_raster(path) as src:
        _, valid = read_window(src, Window(0, 0, 16, 16))
    np.testing.assert_array_equal(valid, mask > 0)  # the mask, not NIR: rows 0-3 right of column 5 stay valid


def test_rgbn_pixels_with_nir_zero_get_predictions(tif, tmp_path):
    """End to end: predict on an RGBN file written with rasterio's defaults writes classes, not nodata, where NIR is
    0; a model trained with alpha_is_mask=true reads band 4 as a mask and writes nodata there."""
    from tests.domains.landcover.conftest import Linear1x1, make_job, predict_with

    path, _ = _rgbn(tif, "scene.tif", crs="EPSG:32631")
    meta = {"bands": [1, 2, 3, 4], "band_names": ["red", "green", "blue", "nir"], "image_band_count": 4,
            "num_classes": 2, "class_names": ["a", "b"], "class_colors": [[0, 0, 0], [255, 255, 255]],
            "ignore_index": 255, "normalization": {"mean": [0.0] * 4, "std": [1.0] * 4, "nodata_value": 0.0}}
    net = Linear1x1(np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    for alpha_is_mask, nodata_rows in ((None, 0), (True, 4)):
        out = tmp_path / f"pred_{alpha_is_mask}.tif"
        predict_with(make_job({**meta, "alpha_is_mask": alpha_is_mask}, net), path, out, report=False, preview=False)
        with rasterio.open(out) as dst:
            classes = dst.read(1)
        assert (classes[:nodata_rows] == 255).all() and (classes[nodata_rows:] < 2).all()
