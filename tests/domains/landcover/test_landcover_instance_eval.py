"""Instance evaluation of land cover streams strip by strip and scores a perfect prediction as perfect, with the
truth from the instance rasters or, without them, from connected components of the label rasters."""

import json
import shutil

import numpy as np
import pytest

from segsuite.core.instances import Instancer
from segsuite.domains.landcover.classes import DEFAULT_CLASSES
from segsuite.domains.landcover.synthetic import synthetic_layout
from tests.domains.landcover.conftest import evaluate_with, make_job, write_tif
from tests.domains.landcover.test_landcover_polygons import ClassFromBand


@pytest.fixture
def exact_root(tmp_path):
    """One 160 px scene whose single band holds the true class, with its label and instance rasters."""
    labels, instances = synthetic_layout(160, 160, np.random.default_rng(3))
    root = tmp_path / "data"
    for folder, data in (("images", labels.astype(np.float32)), ("labels", labels), ("instances", instances)):
        (root / folder).mkdir(parents=True)
        write_tif(root / folder / "scene_000.tif", data, nodata=255 if folder == "labels" else None)
    return root, labels, instances


def run(root, tmp_path, min_size=0):
    meta = {"bands": [1], "image_band_count": 1, "num_classes": 6, "ignore_index": 255,
            "normalization": {"mean": [0.0], "std": [1.0]}, **DEFAULT_CLASSES.to_meta()}
    cut = Instancer(["building"], DEFAULT_CLASSES.names, min_size=min_size)
    job = make_job(meta, ClassFromBand(False), "instance", cut, tile=(32, 32), overlap=(8, 8), batch_size=4)
    data = {"root": root, "patch_size": "[32,32]", "holdout_block": 64, "holdout_fraction": 0.5}
    return evaluate_with(job, [f"domain.datamodule.datasets.{k}={v}" for k, v in data.items()], tmp_path / "out")


@pytest.mark.parametrize("with_instance_rasters", [True, False])
def test_a_perfect_prediction_scores_pq_1_and_counts_every_building(exact_root, tmp_path, with_instance_rasters):
    root, labels, instances = exact_root
    if not with_instance_rasters:
        shutil.rmtree(root / "instances")
    result = run(root, tmp_path)
    building = next(r for r in result["panoptic"]["per_class"] if r["class"] == "building")
    assert building["pq"] == 1.0 and building["fp"] == building["fn"] == 0 and building["tp"] > 3
    rows = (tmp_path / "out" / "instance_counts.csv").read_text().splitlines()[1:]
    assert rows and all(r.split(",")[-1] == r.split(",")[-2] for r in rows)  # predicted == true per rectangle
    assert sum(int(r.split(",")[-1]) for r in rows) >= building["tp"]  # objects cut by a rectangle edge count twice
    report = json.loads((tmp_path / "out" / "panoptic.json").read_text())
    assert report["f1"] == 1.0 and report["task"] == "instance"


def test_small_objects_dropped_by_min_size_are_false_negatives(exact_root, tmp_path):
    root, labels, instances = exact_root
    result = run(root, tmp_path, min_size=10_000)
    building = next(r for r in result["panoptic"]["per_class"] if r["class"] == "building")
    assert building["tp"] == building["fp"] == 0 and building["fn"] > 3 and building["pred_count"] == 0
