"""Written Cityscapes label PNGs are evaluated by the official cityscapesscripts, and our numbers agree."""

import copy

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("cityscapesscripts")
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs_eval  # noqa: E402
from cityscapesscripts.helpers.labels import id2label  # noqa: E402

from segsuite.domains.road_scene.datasets import build_datasets  # noqa: E402
from segsuite.domains.road_scene.io import output_name, write_cityscapes_label_ids, write_native  # noqa: E402
from segsuite.domains.road_scene.metrics import category_miou  # noqa: E402


def _corrupt(train_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible wrong prediction: blocks of random classes, pixel noise and a one-pixel shift."""
    pred = np.roll(np.where(train_ids == 255, 0, train_ids), 1, axis=1)
    h, w = pred.shape
    for _ in range(6):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        pred[y: y + 8, x: x + 8] = rng.integers(0, 19)
    noise = rng.random(pred.shape) < 0.05
    pred[noise] = rng.integers(0, 19, size=noise.sum())
    return pred


def _official_args(tmp_path):
    args = copy.copy(cs_eval.args)
    args.quiet = True
    args.JSONOutput = False
    args.evalPixelAccuracy = True
    args.evalInstLevelScore = True  # also reads the synthetic *_instanceIds.png
    args.colorized = False
    args.exportFile = str(tmp_path / "result.json")
    args.predictionPath = str(tmp_path)
    args.predictionWalk = None
    return args


def test_miou_and_category_miou_agree_with_cityscapesscripts(cityscapes_root, tmp_path, monkeypatch):
    # cityscapesscripts 2.3 still calls np.in1d (removed in NumPy 2.4) in its instance/pixel-accuracy code
    monkeypatch.setattr(np, "in1d", lambda a, b, invert=False: np.isin(a, b, invert=invert).ravel(), raising=False)
    val = build_datasets(str(cityscapes_root), layout="cityscapes")["val"]
    rng = np.random.default_rng(0)
    conf = np.zeros((19, 19), np.int64)
    preds, gts = [], []
    for i, (image_path, label_path) in enumerate(val.files):
        gt = val.decode(label_path)  # trainIds with 255 = ignore
        pred = _corrupt(gt, rng)
        out = tmp_path / "pred" / output_name(image_path.name, val.meta)
        if i % 2:
            write_cityscapes_label_ids(pred, out)
        else:
            write_native(pred, val.meta, out)  # the generic path must write the same label ids
        keep = gt != 255
        conf += np.bincount(19 * gt[keep] + pred[keep], minlength=19 * 19).reshape(19, 19)
        preds.append(str(out))
        gts.append(str(label_path))

    result = cs_eval.evaluateImgLists(preds, gts, _official_args(tmp_path))

    tp = np.diag(conf).astype(float)
    union = conf.sum(0) + conf.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    ours = float(np.nanmean(iou))
    assert 0.2 < ours < 0.95  # a real, imperfect prediction
    assert ours == pytest.approx(result["averageScoreClasses"], abs=0.01)
    for train_id, name in enumerate(val.meta["class_names"]):
        official = result["classScores"][name]
        assert (np.isnan(iou[train_id]) and np.isnan(official)) or iou[train_id] == pytest.approx(official, abs=1e-9)

    cats = category_miou(conf)
    assert cats["mIoU"] == pytest.approx(result["averageScoreCategories"], abs=0.01)
    for name, value in cats["per_category"].items():
        official = result["categoryScores"][name]
        assert (np.isnan(value) and np.isnan(official)) or value == pytest.approx(official, abs=1e-9)


def test_written_label_ids_are_official_ids_with_same_geometry(tmp_path):
    rng = np.random.default_rng(5)
    train_ids = rng.integers(0, 19, size=(37, 53))
    train_ids[0, :5] = 255
    path = write_cityscapes_label_ids(train_ids, tmp_path / "x_000000_000000_pred.png")
    back = np.asarray(Image.open(path))
    assert back.shape == (37, 53) and back.dtype == np.uint8
    for value in np.unique(back):
        assert int(value) in id2label
    for train_id in range(19):
        ids = np.unique(back[train_ids == train_id])
        assert len(ids) == 1 and id2label[int(ids[0])].trainId == train_id
    assert (back[0, :5] == 0).all()  # ignore -> 'unlabeled'
