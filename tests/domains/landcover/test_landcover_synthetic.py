"""Synthetic scenes: geometry, dtypes, nodata border, determinism, learnable classes, large block-wise raster."""

import tracemalloc

import numpy as np
import pytest
import rasterio
from affine import Affine

from segsuite.domains.landcover.classes import DEFAULT_CLASSES
from segsuite.domains.landcover.dataset import find_scenes
from segsuite.domains.landcover.rasterstats import check_pair
from segsuite.domains.landcover.synthetic import make_dataset, make_large_raster, make_scene


@pytest.mark.parametrize(("dtype", "nodata"), [("uint8", 0), ("uint16", 0), ("int16", -9999), ("float32", None)])
def test_scene_geometry_dtype_and_nodata_border(tmp_path, dtype, nodata):
    img, lbl = make_scene(
        tmp_path / "i.tif",
        tmp_path / "l.tif",
        80,
        100,
        seed=1,
        dtype=dtype,
        bands=5,
        pixel_size=20.0,
        origin=(600_000.0, 4_000_000.0),
        nodata_border=4,
    )
    with rasterio.open(img) as src, rasterio.open(lbl) as lab:
        assert src.crs.to_epsg() == 32631 and src.crs.is_projected
        assert src.transform == Affine.translation(600_000.0, 4_000_000.0) @ Affine.scale(20.0, -20.0) == lab.transform
        assert (src.height, src.width, src.count) == (80, 100, 5) and src.dtypes[0] == dtype
        assert np.isnan(src.nodata) if nodata is None else src.nodata == nodata
        assert src.descriptions[:4] == ("red", "green", "blue", "nir")
        valid = (src.read_masks() > 0).all(axis=0) & np.isfinite(src.read()).all(axis=0)
        labels = lab.read(1)
        assert lab.nodata == 255 and lab.colormap(1)[5] == (*DEFAULT_CLASSES.colors[5], 255)
    border = np.ones((80, 100), bool)
    border[4:-4, 4:-4] = False
    np.testing.assert_array_equal(valid, ~border)
    assert (labels[border] == 255).all() and set(np.unique(labels[~border])) == set(range(6))


def test_scenes_are_deterministic_and_classes_separable(tmp_path):
    make_scene(tmp_path / "a.tif", tmp_path / "al.tif", 96, 96, seed=7)
    make_scene(tmp_path / "b.tif", tmp_path / "bl.tif", 96, 96, seed=7)
    make_scene(tmp_path / "c.tif", tmp_path / "cl.tif", 96, 96, seed=8)
    read = lambda name: rasterio.open(tmp_path / name).read()  # noqa: E731
    assert np.array_equal(read("a.tif"), read("b.tif")) and np.array_equal(read("al.tif"), read("bl.tif"))
    assert not np.array_equal(read("al.tif"), read("cl.tif"))
    image, labels = read("a.tif").astype(float), read("al.tif")[0]
    keep = labels != 255
    x, y = image[:, keep].T, labels[keep]
    centroids = np.stack([x[y == c].mean(axis=0) for c in range(6)])
    nearest = np.argmin(((x[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (nearest == y).mean() > 0.8  # spectra alone separate the classes well; a CNN can learn them


def test_make_dataset_layout_is_valid(tmp_path):
    make_dataset(tmp_path / "root", n_scenes=3, size=48, seed=0)
    scenes = find_scenes(tmp_path / "root")
    assert [s.stem for s in scenes] == ["scene_000", "scene_001", "scene_002"]
    for scene in scenes:
        check_pair(scene.image, scene.label)
        with rasterio.open(scene.label) as src:
            assert set(np.unique(src.read(1))) <= {*DEFAULT_CLASSES.ids, 255}  # class ids and nodata only
    with rasterio.open(scenes[1].image) as a, rasterio.open(scenes[2].image) as b:
        assert b.bounds.left == a.bounds.right  # adjacent scenes


def test_large_raster_is_written_block_by_block(tmp_path):
    tracemalloc.start()
    make_large_raster(tmp_path / "big.tif", 1024, 768, tmp_path / "big_lbl.tif", block=128, seed=2)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    whole_image_bytes = 4 * 1024 * 768 * 2
    assert peak < whole_image_bytes / 2  # never the whole scene in memory
    with rasterio.open(tmp_path / "big.tif") as src, rasterio.open(tmp_path / "big_lbl.tif") as lab:
        assert (src.height, src.width, src.count) == (1024, 768, 4) and src.block_shapes[0] == (128, 128)
        assert src.transform == lab.transform and src.crs == lab.crs
        labels = lab.read(1)
    assert set(np.unique(labels)) == set(range(6))
    edge = labels[120:136, :]  # regions continue across block rows (no seams): labels match across row 127/128
    assert (edge[7] == edge[8]).mean() > 0.9
