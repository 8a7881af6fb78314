"""Wide rasters in column bands: every land-cover sink takes rectangles and gives what the full-width rows give --
class and probability rasters, areas, preview, polygons joined across band seams, evaluation scores."""

import json

import numpy as np
import pytest
import rasterio
import shapely
import torch

from segsuite.core.instances import Instancer
from segsuite.domains.landcover.classes import DEFAULT_CLASSES
from tests.domains.landcover.conftest import TRANSFORM, evaluate_with, make_job, predict_with, write_tif
from tests.domains.landcover.test_landcover_polygons import ClassFromBand, meta_for, read_polygons, scene


class Smooth(torch.nn.Module):
    """A network with spatial context (3x3 convolutions): tiles and bands matter to it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(8, 6, 3, padding=1))

    def forward(self, x):
        return self.net(x)


def _predict(tif_path, out, band, net, **kw):
    job = make_job(meta_for(4), net, tile=(16, 16), overlap=(6, 6), batch_size=4, band=band)
    return predict_with(job, tif_path, out, **kw)


def test_bands_write_what_full_width_rows_write(tmp_path):
    image = np.random.default_rng(2).normal(size=(4, 37, 90)).astype(np.float32)
    image[:, 30:, 70:] = np.nan  # nodata in the last band
    path = write_tif(tmp_path / "in.tif", image, nodata=float("nan"))
    outputs = {}
    for band in (None, 32):
        out = tmp_path / str(band) / "pred.tif"
        _predict(path, out, band, Smooth(), probabilities=True, cog=True)
        with rasterio.open(out) as cls, rasterio.open(out.with_name("pred_proba.tif")) as proba:
            assert (cls.crs, cls.transform, cls.shape, cls.nodata) == ("EPSG:32631", TRANSFORM, (37, 90), 255)
            areas = json.loads(out.with_name("pred_areas.json").read_text())
            areas.pop("raster")
            outputs[band] = (cls.read(1), proba.read().astype(int), areas,
                             out.with_name("pred_preview.png").read_bytes())
    (c0, p0, a0, v0), (c1, p1, a1, v1) = outputs[None], outputs[32]
    assert np.array_equal(c0, c1) and (c0[30:, 70:] == 255).all()
    assert np.abs(p0 - p1).max() <= 1  # probabilities equal to 1e-6 before rounding to 1/254
    assert a0 == a1 and v0 == v1


def test_a_polygon_across_band_seams_is_one(tif, tmp_path):
    classes, _ = scene()  # a 30 x 23 building over columns 9..31, two touching ones over 5..39
    path = tif("in.tif", classes[None], crs="EPSG:32631")
    cut = Instancer(["building"], DEFAULT_CLASSES.names, min_size=4)
    found = {}
    for band in (None, 16):  # seams at columns 16, 32 and 48 cross every building
        job = make_job(meta_for(1), ClassFromBand(False), "instance", cut, tile=(16, 16), overlap=(4, 4),
                       batch_size=4, band=band)
        out = tmp_path / str(band) / "pred.tif"
        predict_with(job, path, out, report=False, preview=False)
        _, polygons = read_polygons(out.with_name("pred_instances.gpkg"))
        with rasterio.open(out.with_name("pred_instances.tif")) as ids:
            found[band] = (sorted(((p["pixels"], g) for g, p in polygons), key=lambda f: f[0]), ids.read(1) > 0)
    assert np.array_equal(found[16][1], found[None][1])
    assert [n for n, _ in found[16][0]] == [15 * 35, 30 * 23]  # one polygon each, across the seams
    assert all(g.geom_type == "Polygon" and g.equals(h) for (_, g), (_, h) in zip(found[16][0], found[None][0]))
    x0, y0 = TRANSFORM @ (9, 5)
    x1, y1 = TRANSFORM @ (32, 35)
    assert found[16][0][1][1].equals(shapely.box(x0, y1, x1, y0))


@pytest.mark.parametrize("mode", ["semantic", "instance"])
def test_evaluation_in_bands_scores_what_rows_score(tmp_path, mode):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 6, (48, 96)).astype(np.uint8)
    labels[10:30, 20:60] = 4  # a building across band seams
    root = tmp_path / "data"
    for folder, data in (("images", labels.astype(np.float32)), ("labels", labels)):
        (root / folder).mkdir(parents=True)
        write_tif(root / folder / "scene_000.tif", data, nodata=255 if folder == "labels" else None)
    meta = {**meta_for(1), "normalization": {"mean": [0.0], "std": [1.0]}}
    cut = Instancer(["building"], DEFAULT_CLASSES.names, min_size=0) if mode == "instance" else None
    data = {"root": root, "patch_size": "[32,32]", "holdout_block": 48, "holdout_fraction": 0.5}
    results = []
    for band in (None, 20):
        job = make_job(meta, ClassFromBand(False), mode, cut, tile=(16, 16), overlap=(4, 4), batch_size=4, band=band)
        results.append(evaluate_with(job, [f"domain.datamodule.datasets.{k}={v}" for k, v in data.items()],
                                     tmp_path / f"out{band}"))
    assert results[0]["confusion_matrix"] == results[1]["confusion_matrix"]
    if mode == "instance":
        assert results[0]["panoptic"] == results[1]["panoptic"]
        assert (tmp_path / "outNone" / "instance_counts.csv").read_text() == (
            tmp_path / "out20" / "instance_counts.csv").read_text()


@pytest.mark.parametrize("stride", [1, 3])
def test_the_api_collector_puts_band_blocks_back_together(tif, stride):
    from segsuite.core.api import Collector
    from segsuite.core.contracts import Item
    from segsuite.core.pipeline import predict_item
    from segsuite.domains.landcover.reader import GeoTiffReader

    classes, _ = scene()
    path = tif("in.tif", classes[None], crs="EPSG:32631")
    results = []
    for band in (None, 16):
        job = make_job(meta_for(1), ClassFromBand(False), tile=(16, 16), overlap=(4, 4), batch_size=4, band=band)
        opened = GeoTiffReader().open(Item("in.tif", path), job)
        collector = Collector(job, probabilities=True, stride=stride, opened=opened)
        cols = {p.col0 for p in predict_item(opened, job) if collector.update(p) is None}
        assert len(cols) == (1 if band is None else 4)
        results.append(collector.close())
    assert np.array_equal(results[0].classes, results[1].classes)
    assert np.array_equal(results[1].classes, classes[::stride, ::stride].astype(np.uint8))
    assert np.allclose(results[0].probabilities, results[1].probabilities, atol=1e-6)
