"""Instance predict on GeoTIFFs: objects crossing tile and strip borders come out as one polygon with the right
area, in the raster's CRS; touching buildings split by the border channel; the panoptic raster pairs class and id."""

import fiona
import numpy as np
import pytest
import rasterio
import shapely
import torch
from shapely.geometry import shape

from segsuite.core.errors import ConfigError
from segsuite.core.instances import Instancer
from segsuite.domains.landcover.classes import DEFAULT_CLASSES
from tests.domains.landcover.conftest import TRANSFORM, make_job, predict_with

BUILDING, ROAD = 4, 5


class ClassFromBand(torch.nn.Module):
    """Logits that pick the class stored in band 1 (and, with a second band, a border logit from it)."""

    def __init__(self, border: bool) -> None:
        super().__init__()
        self.border = border

    def forward(self, x):
        logits = torch.nn.functional.one_hot(x[:, 0].round().long(), 6).permute(0, 3, 1, 2).float() * 10
        if self.border:
            logits = torch.cat([logits, (x[:, 1:2] - 0.5) * 20], dim=1)
        return logits


def scene() -> tuple[np.ndarray, np.ndarray]:
    """Class band (0: forest) with a 30 x 23 building, two buildings sharing an edge, a road; border band."""
    classes = np.zeros((70, 61), np.float32)
    classes[5:35, 9:32] = BUILDING  # crosses 16 px tiles and strips in both directions
    classes[45:60, 5:40] = BUILDING  # two 15 x 17 / 15 x 18 buildings touching at column 22
    classes[:, 50:53] = ROAD
    border = np.zeros_like(classes)
    border[45:60, 21:23] = 1.0
    return classes, border


def meta_for(bands: int) -> dict:
    return {"bands": list(range(1, bands + 1)), "image_band_count": bands, "num_classes": 6, "ignore_index": 255,
            "normalization": {"mean": [0.0] * bands, "std": [1.0] * bands}, **DEFAULT_CLASSES.to_meta()}


def run(tif, tmp_path, border: bool, mode: str = "instance", fmt: str = "gpkg"):
    classes, border_band = scene()
    image = np.stack([classes, border_band]) if border else classes[None]
    path = tif("in.tif", image, crs="EPSG:32631")
    cut = Instancer(["building"], DEFAULT_CLASSES.names, min_size=4)
    job = make_job(meta_for(image.shape[0]), ClassFromBand(border), mode, cut, border, tile=(16, 16), overlap=(4, 4),
                   batch_size=4)
    written = predict_with(job, path, tmp_path / "pred.tif", report=False, preview=False, vector_format=fmt)
    return path, written, classes


def read_polygons(path):
    with fiona.open(path) as src:
        return src.crs, [(shape(f.geometry), dict(f.properties)) for f in src]


def test_an_object_across_tile_borders_is_one_polygon_with_the_right_area(tif, tmp_path):
    path, written, classes = run(tif, tmp_path, border=False)
    assert [p.name for p in written] == ["pred.tif", "pred_instances.csv", "pred_instances.gpkg", "pred_instances.tif"]
    crs, polygons = read_polygons(tmp_path / "pred_instances.gpkg")
    assert crs.to_epsg() == 32631
    assert len(polygons) == 2  # without borders the touching pair is one object
    first, pair = sorted(polygons, key=lambda p: p[1]["id"])
    assert first[0].geom_type == "Polygon" and first[0].area == pytest.approx(30 * 23 * 100.0)  # 10 m pixels
    assert first[1]["pixels"] == 30 * 23 and first[1]["area_ha"] == pytest.approx(6.9)
    x0, y0 = TRANSFORM @ (9, 5)
    x1, y1 = TRANSFORM @ (32, 35)
    assert first[0].equals(shapely.box(x0, y1, x1, y0))
    assert pair[1]["pixels"] == 15 * 35
    with rasterio.open(path) as src, rasterio.open(tmp_path / "pred_instances.tif") as ids:
        assert ids.crs == src.crs and ids.transform == src.transform and ids.shape == src.shape
        values = ids.read(1)
    assert np.array_equal(values > 0, classes == BUILDING)
    assert sorted(np.bincount(values.ravel())[1:].tolist()) == sorted(p["pixels"] for _, p in polygons)


def test_touching_buildings_split_by_the_border_channel(tif, tmp_path):
    run(tif, tmp_path, border=True, mode="panoptic", fmt="geojson")
    _, polygons = read_polygons(tmp_path / "pred_instances.geojson")
    assert sorted(p["pixels"] for _, p in polygons) == [15 * 17, 15 * 18, 30 * 23]
    assert all(g.geom_type == "Polygon" for g, _ in polygons)
    with rasterio.open(tmp_path / "pred_panoptic.tif") as pan, rasterio.open(tmp_path / "pred.tif") as cls:
        pair = pan.read()
        assert np.array_equal(pair[0], cls.read(1)) and pan.descriptions == ("class", "instance")
    assert len(np.unique(pair[1][pair[0] == BUILDING])) == 3 and not pair[1][pair[0] != BUILDING].any()


def test_bad_vector_format_fails_before_any_output(tif, tmp_path):
    with pytest.raises(ConfigError, match="must end in"):
        run(tif, tmp_path, border=False, fmt="shp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


def test_an_existing_polygon_file_is_refused_before_any_output(tif, tmp_path):
    from segsuite.core.errors import DataError

    (tmp_path / "pred_instances.gpkg").write_text("mine")
    with pytest.raises(DataError, match="pred_instances.gpkg"):
        run(tif, tmp_path, border=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "pred_instances.gpkg"]
    assert (tmp_path / "pred_instances.gpkg").read_text() == "mine"
