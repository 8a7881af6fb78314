"""Evaluate through the core pipeline in-process with pointwise networks: every reported number recomputed by hand
or from predict's files."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from segsuite.core.errors import ConfigError
from segsuite.domains.road_scene.datasets import build_datasets
from segsuite.domains.road_scene.metrics import category_miou, kitti_road_counts, kitti_road_scores


def _confusion(pairs, num_classes: int = 19) -> np.ndarray:
    conf = np.zeros((num_classes, num_classes), np.int64)
    for pred, gt in pairs:
        keep = gt != 255
        conf += np.bincount(num_classes * gt[keep] + pred[keep], minlength=num_classes ** 2).reshape(conf.shape)
    return conf


def test_cityscapes_scores_match_a_hand_computation(cityscapes_root, tmp_path, pointwise, pipeline):
    datasets = build_datasets(str(cityscapes_root))
    val = datasets["val"]
    task = pointwise.rgb_argmax(val.meta)
    out = tmp_path / "eval"
    result = pipeline.evaluate(task, datasets, out)
    pairs = [(pointwise.expected(np.asarray(Image.open(img))), val.decode(lbl)) for img, lbl in val.files]
    conf = _confusion(pairs)
    tp, union = np.diag(conf), conf.sum(0) + conf.sum(1) - np.diag(conf)
    miou = np.mean(tp[union > 0] / union[union > 0])
    report = json.loads((out / "metrics.json").read_text())
    assert report["miou"] == pytest.approx(miou, abs=1e-9) == result["miou"]
    assert report["pixel_accuracy"] == pytest.approx(tp.sum() / conf.sum(), abs=1e-9)
    assert report["category_miou"] == pytest.approx(category_miou(conf)["mIoU"], abs=1e-9)
    assert report["split"] == "val" and report["images"] == 3 and 0 <= report["boundary_f"] <= 1
    assert np.array_equal(report["confusion_matrix"], conf)
    with open(out / "per_image.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image"] for r in rows] == [str(img) for img, _ in val.files]
    for row, (pred, gt) in zip(rows, pairs):
        keep = gt != 255
        assert float(row["pixel_accuracy"]) == pytest.approx((pred[keep] == gt[keep]).mean(), abs=1e-9)
    assert (out / "confusion.png").stat().st_size > 0 and (out / "per_class.csv").is_file()


def test_kitti_scores_equal_the_devkit_numbers_on_predicted_files(kitti_root, tmp_path, pointwise, pipeline):
    datasets = build_datasets(str(kitti_root), layout="kitti")
    val = datasets["val"]
    task = pointwise.task(val.meta, np.array([[0, 0, 0], [3.0, -2.0, 1.0]]), np.array([0.0, 0.5]))
    report = pipeline.evaluate(task, datasets, tmp_path / "ev")["kitti_road"]
    counts = None
    for image, label in val.files:  # the devkit reads the written PNG as value / 255
        pipeline.predict(task, image, tmp_path / "pred", outputs=["label"])
        category, _, number = image.stem.rpartition("_")
        prob = np.asarray(Image.open(tmp_path / "pred" / "labels" / f"{category}_road_{number}.png")) / 255.0
        c = kitti_road_counts(prob, val.decode(label), quantize=False)
        counts = c if counts is None else {k: counts[k] + c[k] for k in c}
    expected = kitti_road_scores(counts)
    for key in ("MaxF", "AP", "precision", "recall"):
        assert report[key] == pytest.approx(expected[key], abs=1e-6)
    assert 0 < report["MaxF"] <= 1


def test_checkpoint_for_other_classes_is_refused(cityscapes_root, kitti_root, tmp_path, pointwise, pipeline):
    kitti_meta = build_datasets(str(kitti_root), layout="kitti")["train"].meta
    task = pointwise.task(kitti_meta, np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ConfigError, match="model.ckpt was trained with classes"):
        pipeline.evaluate(task, build_datasets(str(cityscapes_root)), tmp_path / "ev")
    assert not (tmp_path / "ev").exists()
