"""Many rasters as one input: a VRT, ``mosaic:PATTERN`` and a STAC catalogue of small COGs (served over HTTP by a
local Range server) each predict into one georeferenced COG; bad mosaics and catalogues are one line, exit 2."""

import json
import os

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine

from segsuite.domains.landcover.mosaic import write_vrt
from tests.domains.landcover.conftest import TRANSFORM, make_job, predict_with, write_tif
from tests.domains.landcover.test_landcover_polygons import ClassFromBand, meta_for
from tests.domains.landcover.test_landcover_predict import predict_inprocess
from tests.domains.landcover.test_landcover_remote import server  # noqa: F401 (the fixture)

H, W = 40, 56  # the whole scene; four 20 x 28 tiles


def _scene() -> np.ndarray:
    rng = np.random.default_rng(5)
    image = rng.integers(0, 1000, (4, H, W)).astype(np.uint16)
    image[0] = rng.integers(0, 6, (H, W))  # band 1: the class ClassFromBand predicts
    return image


def _tiles(folder, image, crs="EPSG:32631", cog=True) -> list:
    """The scene as four COGs on its grid (tile_0 .. tile_3)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (r, c) in enumerate([(0, 0), (0, 28), (20, 0), (20, 28)]):
        plain = write_tif(folder / f".plain_{i}.tif", image[:, r : r + 20, c : c + 28], crs=crs,
                          transform=TRANSFORM @ Affine.translation(c, r), block=None)
        path = folder / f"tile_{i}.tif"
        rasterio.shutil.copy(plain, path, driver="COG" if cog else "GTiff")
        plain.unlink()
        paths.append(path)
    return paths


def _check(out, image):
    with rasterio.open(out) as dst:
        assert (dst.crs.to_epsg(), dst.transform, dst.shape, dst.nodata) == (32631, TRANSFORM, (H, W), 255)
        assert dst.driver == "GTiff" and dst.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert np.array_equal(dst.read(1), image[0])


def _job():
    return make_job(meta_for(4), ClassFromBand(False), tile=(16, 16), overlap=(4, 4), batch_size=4)


def test_a_vrt_and_a_glob_mosaic_predict_into_one_cog(tmp_path):
    image = _scene()
    tiles = _tiles(tmp_path / "scenes", image)
    vrt = write_vrt([str(t) for t in tiles], tmp_path / "scene.vrt")
    predict_with(_job(), vrt, tmp_path / "a" / "pred.tif", cog=True, report=False, preview=False)
    _check(tmp_path / "a" / "pred.tif", image)
    predict_with(_job(), f"mosaic:{tmp_path}/scenes/*.tif", tmp_path / "b" / "pred.tif", cog=True, report=False,
                 preview=False)
    _check(tmp_path / "b" / "pred.tif", image)


def _catalogue(root, names, assets=("image",)):
    """A static catalogue: items.json (an ItemCollection) and catalog.json linking one JSON per item."""
    items = [{"type": "Feature", "stac_version": "1.0.0", "id": n, "properties": {}, "geometry": None, "links": [],
              "assets": {a: {"href": f"{n}.tif", "type": "image/tiff; application=geotiff"} for a in assets}}
             for n in names]
    (root / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    for item in items:
        (root / f"{item['id']}.json").write_text(json.dumps(item))
    links = [{"rel": "item", "href": f"./{n}.json"} for n in names]
    (root / "catalog.json").write_text(json.dumps({"type": "Catalog", "id": "c", "stac_version": "1.0.0",
                                                   "description": "tiles", "links": links}))


def test_a_stac_catalogue_over_http_predicts_mosaicked_or_per_item(server, tmp_path):  # noqa: F811
    url, root, _ = server
    image = _scene()
    _tiles(root, image)
    _catalogue(root, [f"tile_{i}" for i in range(4)])
    job = _job()
    from segsuite.core.pipeline import run_predict
    from segsuite.domains.landcover.reader import GeoTiffReader
    from segsuite.domains.landcover.writer import GeoTiffWriter

    writer = dict(cog=True, report=False, preview=False)
    run_predict(GeoTiffReader(stac_mode="mosaic"), GeoTiffWriter(**writer), job, f"stac:{url}/catalog.json",
                tmp_path / "m" / "pred.tif")
    _check(tmp_path / "m" / "pred.tif", image)
    run_predict(GeoTiffReader(), GeoTiffWriter(**writer), job, f"stac:{url}/items.json", tmp_path / "each")
    assert sorted(os.listdir(tmp_path / "each")) == [f"tile_{i}.tif" for i in range(4)]
    with rasterio.open(tmp_path / "each" / "tile_3.tif") as dst:
        assert dst.transform == TRANSFORM @ Affine.translation(28, 20) and np.array_equal(dst.read(1),
                                                                                           image[0, 20:, 28:])


def test_single_band_assets_are_stacked_in_order(tmp_path):
    image = _scene()
    root = tmp_path / "cat"
    root.mkdir()
    for b, name in enumerate(["red", "green", "blue", "nir"]):
        write_tif(root / f"{name}.tif", image[b], transform=TRANSFORM)
    item = {"type": "Feature", "id": "scene", "properties": {}, "geometry": None, "links": [],
            "assets": {n: {"href": f"{n}.tif"} for n in ["nir", "blue", "green", "red"]}}
    (root / "item.json").write_text(json.dumps(item))
    from segsuite.core.pipeline import run_predict
    from segsuite.domains.landcover.reader import GeoTiffReader
    from segsuite.domains.landcover.writer import GeoTiffWriter

    run_predict(GeoTiffReader(["red", "green", "blue", "nir"]), GeoTiffWriter(cog=True, report=False, preview=False),
                _job(), f"stac:{root}/item.json", tmp_path / "out" / "pred.tif")
    _check(tmp_path / "out" / "pred.tif", image)


@pytest.fixture
def bad_catalogues(tmp_path, server):  # noqa: F811
    image = _scene()
    _tiles(tmp_path / "mixed", image[:, :, :], cog=False)
    other = tmp_path / "mixed" / "tile_3.tif"
    with rasterio.open(other, "r+") as dst:
        dst.crs = "EPSG:32632"
    cat = tmp_path / "cat"
    cat.mkdir()
    _catalogue(cat, ["a"], assets=("visual",))
    url, served, _ = server
    (served / "gone").mkdir(exist_ok=True)
    _catalogue(served / "gone", ["missing"])  # its asset missing.tif is not there: HTTP 404
    return {"404": (f"stac:{url}/gone/items.json", "missing.tif: remote raster not found (HTTP 404)"),
            "crs": (f"mosaic:{tmp_path}/mixed/*.tif", "tile_3.tif: CRS differs"),
            "asset": (f"stac:{cat}/items.json", "item 'a' has no asset 'image' (it has: visual)"),
            "url": ("stac:http://127.0.0.1:9/items.json", "cannot read the STAC JSON")}


@pytest.mark.parametrize("case", ["crs", "asset", "url", "404"])
def test_bad_mosaics_and_catalogues_are_one_line_exit_2(case, bad_catalogues, tiny_checkpoint, tmp_path, capsys):
    input, message = bad_catalogues[case]
    code, err = predict_inprocess(capsys, tiny_checkpoint, f"'{input}'", tmp_path / "out" / "pred.tif")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_reproject_warps_a_scene_in_another_crs_onto_the_first_grid(tmp_path):
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    image = _scene()
    image[0, 20:, 28:] = 4  # the quarter to warp: one class, which bilinear resampling keeps inside it
    tiles = _tiles(tmp_path / "scenes", image, cog=False)
    with rasterio.open(tiles[3]) as src:  # the last quarter moves to the next UTM zone
        transform, width, height = calculate_default_transform(src.crs, "EPSG:32632", src.width, src.height,
                                                               *src.bounds)
        data = np.zeros((4, height, width), np.uint16)
        reproject(src.read(), data, src_transform=src.transform, src_crs=src.crs, dst_transform=transform,
                  dst_crs="EPSG:32632", resampling=Resampling.nearest)
    write_tif(tiles[3], data, crs="EPSG:32632", transform=transform, block=None)
    job, out = _job(), tmp_path / "out" / "pred.tif"
    from segsuite.core.errors import DataError
    from segsuite.core.pipeline import run_predict
    from segsuite.domains.landcover.reader import GeoTiffReader
    from segsuite.domains.landcover.writer import GeoTiffWriter

    writer = GeoTiffWriter(report=False, preview=False)
    with pytest.raises(DataError, match="tile_3.tif: CRS differs.*reproject=true"):
        run_predict(GeoTiffReader(), writer, job, f"mosaic:{tmp_path}/scenes/*.tif", out)
    run_predict(GeoTiffReader(reproject=True), writer, job, f"mosaic:{tmp_path}/scenes/*.tif", out)
    with rasterio.open(out) as dst:
        assert dst.crs.to_epsg() == 32631 and dst.transform == TRANSFORM and dst.height >= H and dst.width >= W
        classes = dst.read(1)
    assert np.array_equal(classes[:16, :W], image[0, :16])  # the quarters in the first CRS, as they were
    assert (classes[23:37, 31:53] == 4).all()  # inside the warped quarter, away from its edges
