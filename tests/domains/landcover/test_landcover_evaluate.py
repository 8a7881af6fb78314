"""``scripts/evaluate.py domain=landcover``: scores exactly the held-out pixels through tiled inference."""

import csv
import json
import os

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

import segsuite.core.cli
import segsuite.core.evaluate
from segsuite.domains.landcover.dataset import build_datasets
from tests.domains.landcover.conftest import TRANSFORM, evaluate_with, make_job, write_tif
from tests.helpers import compose_config

DATA = ["domain.datamodule.datasets.patch_size=[32,32]", "domain.datamodule.datasets.holdout_block=32"]


class Always(torch.nn.Module):
    """Predicts class ``k`` everywhere."""

    def __init__(self, k: int, classes: int = 6) -> None:
        super().__init__()
        self.k, self.classes = k, classes

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.classes, *x.shape[-2:])
        out[:, self.k] = 1.0
        return out


def label_counts(root, build_kwargs: dict, split: str) -> np.ndarray:
    """Hand count of the scored pixels per class: labelled, not ignored, image valid, inside the split's rects."""
    regions = build_datasets(str(root), **build_kwargs)[split].regions
    counts = np.zeros(6, np.int64)
    for region in regions:
        with rasterio.open(region.scene.image) as img, rasterio.open(region.scene.label) as lbl:
            valid = (img.read_masks() > 0).all(axis=0) & (lbl.read_masks(1) > 0)
            labels = lbl.read(1)
        for rect in region.rects:
            inside = np.zeros_like(valid)
            inside[rect.row0 : rect.row1, rect.col0 : rect.col1] = True
            keep = valid & inside & (labels != 255)
            counts += np.bincount(labels[keep], minlength=6)
    return counts


@pytest.mark.parametrize("split_kwargs,split", [
    ({"holdout_fraction": 0.25, "holdout_mode": "blocks"}, "val"),  # hold-out blocks inside both scenes
    ({"holdout_fraction": 0.25, "holdout_mode": "strip", "test_stems": ["scene_001"]}, "test"),  # a whole scene
])
def test_confusion_matrix_counts_exactly_the_held_out_pixels(synthetic_root, trained_meta, tmp_path, split_kwargs,
                                                             split):
    overrides = [f"domain.datamodule.datasets.{k}={json.dumps(v)}" for k, v in split_kwargs.items()]
    job = make_job(trained_meta, Always(2), tile=(40, 40), overlap=(8, 8), batch_size=3)
    result = evaluate_with(job, [f"domain.datamodule.datasets.root={synthetic_root}", *DATA, *overrides], tmp_path)
    counts = label_counts(synthetic_root, {"patch_size": 32, "holdout_block": 32, **split_kwargs}, split)
    confmat = np.array(result["confusion_matrix"])
    np.testing.assert_array_equal(confmat[:, 2], counts)  # every scored pixel predicted as class 2...
    assert confmat.sum() == counts.sum()  # ...and nothing else scored
    present = counts > 0
    expected_iou = np.where(np.arange(6) == 2, counts[2] / counts.sum(), 0.0)[present]
    assert result["miou"] == pytest.approx(expected_iou.mean())
    assert result["split"] == split and result["per_class_f1"]["moor"] == pytest.approx(result["per_class"][2]["dice"])
    assert sorted(os.listdir(tmp_path)) == ["confusion.png", "metrics.json", "per_class.csv"]
    with open(tmp_path / "per_class.csv", newline="") as fh:
        assert [int(r["pixels"]) for r in csv.DictReader(fh)] == counts.tolist()


@pytest.mark.parametrize("label_kwargs,message", [
    ({"crs": "EPSG:4326"}, "CRS: image EPSG:32631 vs label EPSG:4326"),
    ({"transform": TRANSFORM @ Affine.translation(1, 0)}, "transform: image (10.0, 0.0, 500000.0"),
    ({"shape": (32, 31)}, "width x height: image 32x32 vs label 31x32"),
])
def test_image_and_label_on_different_grids_exit_2(tmp_path, tiny_checkpoint, capsys, label_kwargs, message):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    write_tif(root / "images" / "a.tif", np.ones((4, 32, 32), np.uint16))
    shape = label_kwargs.pop("shape", (32, 32))
    write_tif(root / "labels" / "a.tif", np.zeros(shape, np.uint8), **label_kwargs)
    cfg = compose_config("evaluate", ["domain=landcover", f"checkpoint={tiny_checkpoint}", f"output_dir={tmp_path}",
                                      f"domain.datamodule.datasets.root={root}", *DATA])
    with pytest.raises(SystemExit) as exit_info:
        segsuite.core.cli.run(segsuite.core.evaluate.evaluate, cfg)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "does not match" in err and message in err, err
    assert sorted(os.listdir(tmp_path)) == ["data"]
