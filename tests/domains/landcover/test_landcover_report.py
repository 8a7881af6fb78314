"""Area report on hand-computable rasters, CSV/JSON output, geographic CRS note, PNG preview."""

import csv
import json

import numpy as np
import pytest
from affine import Affine
from PIL import Image

from segsuite.core.errors import DataError
from segsuite.domains.landcover.classes import DEFAULT_CLASSES
from segsuite.domains.landcover.report import area_report, preview_png, write_area_report


@pytest.fixture
def pred(tif):
    """40x50 class raster with 10 m pixels, 16 px tiles: class 0 everywhere except hand-placed areas."""
    labels = np.zeros((40, 50), np.uint8)
    labels[:10, :10] = 4  # 100 px
    labels[20:25, :] = 5  # 250 px
    labels[39, :] = 255  # 50 nodata px
    labels[0, 49] = 9  # 1 px of an id outside the class map
    return tif("pred.tif", labels, nodata=255), labels


def test_areas_from_10m_pixels(pred):
    path, _ = pred
    report = area_report(path)
    assert report["pixel_area_m2"] == 100.0 and report["note"] is None and report["crs"] == "EPSG:32631"
    assert report["valid_pixels"] == 1950 and report["nodata_pixels"] == 50
    by_id = {row["id"]: row for row in report["classes"]}
    assert by_id[4] == {
        "id": 4,
        "name": "building",
        "pixels": 100,
        "percent": pytest.approx(100 * 100 / 1950),
        "hectares": pytest.approx(1.0),
        "km2": pytest.approx(0.01),
    }
    assert by_id[5]["pixels"] == 250 and by_id[5]["hectares"] == pytest.approx(2.5)
    assert by_id[0]["pixels"] == 1950 - 100 - 250 - 1 and by_id[0]["hectares"] == pytest.approx(15.99)
    assert by_id[1]["pixels"] == 0 and by_id[9]["name"] == "unknown_9" and by_id[9]["hectares"] == 0.01
    assert sum(r["percent"] for r in report["classes"]) == pytest.approx(100.0)


@pytest.mark.parametrize("block", [None, 16, 64])  # strips (rows) or tiles
def test_counts_match_numpy_for_any_block_layout(tif, block):
    labels = np.random.default_rng(block or 0).integers(0, 6, (700, 90)).astype(np.uint8)
    labels[::7, ::3] = 255
    report = area_report(tif(f"b{block}.tif", labels, nodata=255, block=block))
    expected = np.bincount(labels[labels != 255], minlength=6)
    assert [row["pixels"] for row in report["classes"]] == expected.tolist()
    assert report["nodata_pixels"] == (labels == 255).sum()


def test_units_of_the_crs_are_converted_to_metres(tif):
    path = tif("ft.tif", np.zeros((4, 4), np.uint8), crs="EPSG:2249", transform=Affine(10, 0, 0, 0, -10, 0))
    report = area_report(path)
    assert report["pixel_area_m2"] == pytest.approx(100 * 0.3048006096012192**2)  # US survey feet
    assert report["classes"][0]["hectares"] == pytest.approx(16 * 100 * 0.3048006096012192**2 / 1e4)


def test_geographic_crs_gives_pixels_only(tif):
    path = tif("geo.tif", np.ones((4, 4), np.uint8), crs="EPSG:4326", transform=Affine(1e-4, 0, 2.0, 0, -1e-4, 48.0))
    report = area_report(path)
    assert report["pixel_area_m2"] is None and "geographic" in report["note"]
    assert report["classes"][1]["pixels"] == 16 and report["classes"][1]["hectares"] is None


def test_csv_and_json_outputs(pred, tmp_path):
    report = area_report(pred[0], DEFAULT_CLASSES)
    write_area_report(report, tmp_path / "areas.csv", tmp_path / "areas.json")
    assert json.loads((tmp_path / "areas.json").read_text()) == report
    rows = list(csv.DictReader((tmp_path / "areas.csv").open()))
    assert rows[4]["name"] == "building" and float(rows[4]["hectares"]) == pytest.approx(1.0)
    assert rows[-1]["name"] == "total" and rows[-1]["pixels"] == "1950" and float(rows[-1]["km2"]) == 0.195
    with pytest.raises(DataError, match="already exists"):
        write_area_report(report, tmp_path / "areas.csv")


def test_preview_png_shows_image_and_class_colours(pred, tif, tmp_path):
    path, labels = pred
    image = np.random.default_rng(0).integers(1, 3000, (4, 40, 50)).astype(np.uint16)
    out = preview_png(tif("img.tif", image, nodata=0), path, tmp_path / "preview.png", max_size=32)
    png = np.asarray(Image.open(out).convert("RGB")).reshape(-1, 3)
    colours = {tuple(c) for c in np.unique(png, axis=0)}
    assert DEFAULT_CLASSES.colors[4] in colours and DEFAULT_CLASSES.colors[0] in colours
    assert not list(tmp_path.glob(".preview.png*"))  # no temp file left
    grey = preview_png(tif("grey.tif", image[:1], nodata=0), path, tmp_path / "grey.png")  # 1 band: grey image
    assert Image.open(grey).size[0] > 0
