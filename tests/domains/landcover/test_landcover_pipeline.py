"""Tiled inference through GeoTIFFs (RasterSource -> sliding_window -> writer): exact reproduction under tiling,
seamless blending, the input's exact geometry, and memory that does not grow with the image height."""

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from segsuite.core.inference import TilePredictor, sliding_window
from segsuite.domains.landcover.classes import DEFAULT_CLASSES, ClassMap
from segsuite.domains.landcover.rasterout import RasterWriter
from segsuite.domains.landcover.reader import RasterSource
from segsuite.domains.landcover.synthetic import make_large_raster
from segsuite.domains.landcover.writer import PROBA_SCALE
from segsuite.scripts.benchmarks.landcover import run_child
from tests.domains.landcover.conftest import Linear1x1, make_job, predict_with

PLAIN = dict(report=False, preview=False)

# A rotated, non-round transform in Lambert-93: any rounding or re-derivation of the geometry would show.
ODD = Affine(0.3333333333333, 0.0123456789, 651234.56789, 0.0098765432, -0.3333333333333, 6862345.4321)
TILINGS = [((32, 40), (9, 13)), ((17, 23), (0, 5)), ((64, 64), (31, 31)), ((200, 200), (0, 0))]


def raw_meta(bands: int) -> dict:
    """A checkpoint ``meta`` whose normalisation is the identity, so models see the raster's own values."""
    return {"bands": list(range(1, bands + 1)), "image_band_count": bands, "num_classes": 6, "ignore_index": 255,
            "normalization": {"mean": [0.0] * bands, "std": [1.0] * bands}, **DEFAULT_CLASSES.to_meta()}


class Constant(torch.nn.Module):
    LOGITS = torch.tensor([0.3, -1.7, 2.0, 0.1, -0.4, 1.2])

    def forward(self, x):
        return self.LOGITS.view(1, -1, 1, 1).expand(x.shape[0], -1, *x.shape[-2:]).clone()


@pytest.mark.parametrize("tile,overlap", TILINGS)
def test_identity_model_reproduces_the_raster(tif, tmp_path, tile, overlap):
    image = np.random.default_rng(0).normal(size=(3, 101, 77)).astype(np.float32)
    image[:, 40:45, 10:13] = np.nan  # nodata
    path = tif("in.tif", image, crs="EPSG:2154", transform=ODD, block=None)
    with RasterSource(path, raw_meta(3)) as source:
        with RasterWriter(tmp_path / "out.tif", source.profile, count=3, dtype="float32", nodata=-9999.0) as out:
            for _, row0, logits, covered in sliding_window(TilePredictor(torch.nn.Identity(), "cpu"), [source], 3,
                                                           tile, overlap, batch_size=5):
                out.write_block(row0, 0, logits.numpy(), covered.numpy())  # the tiles' valid masks, carried
    with rasterio.open(tmp_path / "out.tif") as dst:
        got = dst.read()
    valid = np.isfinite(image).all(axis=0)
    np.testing.assert_allclose(got[:, valid], image[:, valid], rtol=1e-6, atol=1e-7)  # float32 rounding only
    assert (got[:, ~valid] == -9999).all()


@pytest.mark.parametrize("tile,overlap", TILINGS)
def test_identity_logits_give_exactly_the_argmax_class(tif, tmp_path, tile, overlap):
    scores = np.random.default_rng(1).normal(size=(6, 101, 77)).astype(np.float32)  # a band per class
    path = tif("in.tif", scores, crs="EPSG:2154", transform=ODD, block=None)
    job = make_job(raw_meta(6), torch.nn.Identity(), tile=tile, overlap=overlap, batch_size=3)
    predict_with(job, path, tmp_path / "out.tif", **PLAIN)
    with rasterio.open(tmp_path / "out.tif") as dst:
        np.testing.assert_array_equal(dst.read(1), scores.argmax(0))


@pytest.mark.parametrize("blend", ["gaussian", "cosine"])
def test_constant_prediction_is_constant_across_tile_borders(tif, tmp_path, blend):
    path = tif("in.tif", np.ones((4, 101, 77), np.uint16), crs="EPSG:2154", transform=ODD)
    predictor = TilePredictor(Constant(), "cpu")
    with RasterSource(path, raw_meta(4)) as source:
        logits = torch.cat([b for _, _, b, _ in sliding_window(predictor, [source], 6, (32, 40), (9, 13), 4, blend)],
                           dim=1)  # (K, H, W)
    job = make_job(raw_meta(4), Constant(), tile=(32, 40), overlap=(9, 13), batch_size=4, blend=blend)
    predict_with(job, path, tmp_path / "out.tif", probabilities=True, **PLAIN)
    np.testing.assert_allclose(logits, Constant.LOGITS.view(6, 1, 1).expand(6, 101, 77), rtol=1e-6, atol=1e-6)
    assert logits.diff(dim=1).abs().max() < 1e-6 and logits.diff(dim=2).abs().max() < 1e-6  # no seams
    expected = (Constant.LOGITS.softmax(0) * PROBA_SCALE).round().to(torch.uint8).numpy()
    with rasterio.open(tmp_path / "out.tif") as classes, rasterio.open(tmp_path / "out_proba.tif") as proba:
        assert (classes.read(1) == 2).all()
        np.testing.assert_array_equal(proba.read(), np.broadcast_to(expected[:, None, None], (6, 101, 77)))
        assert proba.descriptions == tuple(DEFAULT_CLASSES.names)


@pytest.mark.parametrize("cog", [False, True])
def test_outputs_keep_the_input_geometry_exactly(tif, tmp_path, cog):
    rng = np.random.default_rng(2)
    image = rng.integers(1, 1000, (4, 150, 130)).astype(np.uint16)
    image[:, :32, :32] = 0  # a nodata corner (two whole tiles: skipped)
    image[2, 100, 7] = 0  # one nodata pixel in one band
    path = tif("in.tif", image, nodata=0, crs="EPSG:2154", transform=ODD)
    colors = [[10 * i, 255 - 10 * i, 3 * i] for i in range(6)]
    meta = {**raw_meta(4), "class_colors": colors}
    net = Linear1x1(rng.normal(size=(6, 4)))
    job = make_job(meta, net, tile=(64, 64), overlap=(16, 16), batch_size=3)
    written = predict_with(job, path, tmp_path / "out" / "pred.tif", cog=cog, probabilities=True, **PLAIN)
    assert [p.name for p in written] == ["pred.tif", "pred_proba.tif"]
    invalid = (image == 0).any(axis=0)
    with rasterio.open(path) as src:
        for out in written:
            with rasterio.open(out) as dst:
                assert dst.crs == src.crs and dst.crs.to_wkt() == src.crs.to_wkt()
                assert dst.transform == src.transform and tuple(dst.transform) == tuple(src.transform)
                assert (dst.width, dst.height) == (src.width, src.height)
                assert dst.nodata == 255 and all(dt == "uint8" for dt in dst.dtypes)
                np.testing.assert_array_equal(dst.read_masks(1) == 0, invalid)
                assert (dst.read()[:, invalid] == 255).all()
        with rasterio.open(written[0]) as dst:
            table = dst.colormap(1)
            assert [list(table[i][:3]) for i in range(6)] == colors
            expected = np.einsum("kc,chw->khw", net.conv.weight[:, :, 0, 0].detach().numpy(), image).argmax(0)
            np.testing.assert_array_equal(dst.read(1)[~invalid], expected[~invalid])
            if cog:
                assert dst.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"


def test_class_map_round_trips_through_meta():
    assert ClassMap.from_meta(DEFAULT_CLASSES.to_meta()).colors == DEFAULT_CLASSES.colors


def test_peak_memory_does_not_grow_with_image_height(tmp_path):
    # Two rasters 4x apart in height, the same width; each predicted in a fresh process (RSS high-water mark).
    # A whole-image implementation would hold at least the logits: 6 x 4 B x 6144 more rows x 1024 = 144 MiB more.
    peaks = {}
    for height in (2048, 8192):
        raster = make_large_raster(tmp_path / f"h{height}.tif", height, 1024, compress=None)
        result = run_child("pipeline", gdal_cache_mb=8, raster=str(raster), output=str(tmp_path / f"p{height}.tif"),
                           model="tiny", tile=[256, 256], overlap=[32, 32], batch_size=4, threads=1)
        peaks[height] = result["peak_mb"]
        with rasterio.open(tmp_path / f"p{height}.tif") as dst:
            assert dst.shape == (height, 1024)
    assert peaks[8192] - peaks[2048] < 32, peaks  # MiB; repeated runs of one size differ by up to ~10 MiB
