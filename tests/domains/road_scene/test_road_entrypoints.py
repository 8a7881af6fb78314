"""The road-scene domain through scripts/train.py, predict.py and evaluate.py, as a user runs them."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segsuite.core.metrics import scores_from_confusion
from segsuite.domains.road_scene.datasets import build_datasets
from segsuite.domains.road_scene.synthetic import make_dataset
from tests.helpers import run_inline

cs_eval = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
from cityscapesscripts.helpers.labels import id2label  # noqa: E402

pytestmark = pytest.mark.slow  # one training run and several entry-point processes


def _official_miou(predictions: list[Path], ground_truths: list[Path], tmp_path: Path) -> dict:
    """cityscapesscripts' evaluation of label-id PNGs against gtFine ``*_labelIds.png``."""
    args = copy.copy(cs_eval.args)
    args.quiet, args.JSONOutput, args.colorized = True, False, False
    args.evalPixelAccuracy, args.evalInstLevelScore = False, False
    args.exportFile = str(tmp_path / "official.json")
    args.predictionPath, args.predictionWalk = str(tmp_path), None
    return cs_eval.evaluateImgLists([str(p) for p in predictions], [str(g) for g in ground_truths], args)


def _majority_baseline(data: Path) -> float:
    """mIoU on val of predicting the training split's most frequent class everywhere."""
    splits = build_datasets(str(data))
    counts = sum(np.bincount(splits["train"].decode(lbl).ravel(), minlength=256) for _, lbl in splits["train"].files)
    majority = int(counts[:19].argmax())
    conf = np.zeros((19, 19), np.int64)
    for _, lbl in splits["val"].files:
        gt = splits["val"].decode(lbl)
        conf[:, majority] += np.bincount(gt[gt != 255], minlength=19)
    return float(scores_from_confusion(torch.from_numpy(conf))["miou"])


def test_trained_model_predicts_and_evaluates_like_the_official_tools(road_run, run_entry, tmp_path):
    data, ckpt = road_run["data"], road_run["ckpt"]
    predict, evaluate = run_entry(
        ("predict", "domain=road_scene", f"checkpoint={ckpt}", f"input={data / 'leftImg8bit' / 'val'}",
         f"output={tmp_path / 'pred'}", f"hydra.run.dir={tmp_path / 'hp'}"),
        ("evaluate", "domain=road_scene", f"checkpoint={ckpt}", f"domain.datamodule.datasets.root={data}",
         f"output_dir={tmp_path / 'eval'}", f"hydra.run.dir={tmp_path / 'he'}"),
    )
    assert predict.returncode == 0 and evaluate.returncode == 0, predict.stderr[-2000:] + evaluate.stderr[-2000:]
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())

    # predict wrote label-id PNGs of the input's exact size that the official evaluation reads
    images = sorted((data / "leftImg8bit" / "val").rglob("*.png"))
    predictions = [tmp_path / "pred" / "labels" / p.parent.name / p.name for p in images]
    ground_truths = [data / "gtFine" / "val" / p.parent.name / p.name.replace("leftImg8bit", "gtFine_labelIds")
                     for p in images]
    for image, pred in zip(images, predictions):
        ids = np.asarray(Image.open(pred))
        assert ids.dtype == np.uint8 and ids.shape == Image.open(image).size[::-1]
        assert all(id2label[int(i)].trainId < 19 for i in np.unique(ids))
        width, height = Image.open(image).size
        assert Image.open(tmp_path / "pred" / "color" / image.parent.name / image.name).size == (width, height)
        overlay = Image.open(tmp_path / "pred" / "overlay" / image.parent.name / image.name).size
        assert overlay[0] >= width and overlay[1] > height  # the frame, with its legend strip below
    official = _official_miou(predictions, ground_truths, tmp_path)
    assert report["miou"] == pytest.approx(official["averageScoreClasses"], abs=0.01)
    assert report["category_miou"] == pytest.approx(official["averageScoreCategories"], abs=0.01)

    # the short training learned far more than the majority class
    baseline = _majority_baseline(data)
    assert report["miou"] > max(2 * baseline, baseline + 0.15), (report["miou"], baseline)
    assert report["images"] == 4 and (tmp_path / "eval" / "per_image.csv").is_file()


def _broken_set(root: Path, how: str) -> Path:
    """A one-image Cityscapes-layout set with one defect in its val split; returns the offending file."""
    make_dataset(root, n_train=1, n_val=1, size=(32, 64), seed=1)
    label = next((root / "gtFine" / "val").rglob("*_labelIds.png"))
    if how == "size":
        Image.fromarray(np.asarray(Image.open(label))[:30]).save(label)
    elif how == "unknown id":
        ids = np.asarray(Image.open(label)).copy()
        ids[0, 0] = 200
        Image.fromarray(ids).save(label)
    else:
        label.unlink()
    return label


def test_bad_inputs_exit_2_naming_the_file_and_leave_nothing(road_run, run_entry, tmp_path, capsys):
    """Three broken evaluation sets and an unreadable frame: exit 2, one line naming the file, nothing written. The
    first runs through ``scripts/evaluate.py`` (the real CLI: status, stderr, no traceback), the others in this process
    through the same ``segsuite.core.cli.run`` (a subprocess costs 5-7 s of imports)."""
    ckpt = road_run["ckpt"]
    runs, expected = [], []
    for how, message in (("size", "is 32x64 (HxW) but its label"), ("unknown id", "label ids [200]"),
                         ("missing", "no label for image")):
        label = _broken_set(tmp_path / how, how)
        runs.append(("evaluate", "domain=road_scene", f"checkpoint={ckpt}",
                     f"domain.datamodule.datasets.root={tmp_path / how}", f"output_dir={tmp_path / how / 'out'}",
                     f"hydra.run.dir={tmp_path / how / 'hydra'}"))
        expected.append((message, label.name.replace("gtFine_labelIds", "leftImg8bit") if how == "missing"
                         else label.name, tmp_path / how / "out"))
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(frames / "fine.png")
    (frames / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    runs.append(("predict", "domain=road_scene", f"checkpoint={ckpt}", f"input={frames}",
                 f"output={tmp_path / 'pred'}", f"hydra.run.dir={tmp_path / 'hp'}"))
    expected.append(("cannot read image", "broken.png", tmp_path / "pred"))

    (proc,) = run_entry(runs[0])
    results = [(proc.returncode, proc.stderr)]
    assert "Traceback" not in proc.stderr
    for script, *overrides in runs[1:]:
        results.append((run_inline(script, *overrides), capsys.readouterr().err))
    for (code, stderr), (message, name, out) in zip(results, expected):
        assert code == 2, stderr[-2000:]
        error = stderr.strip().splitlines()[-1]
        assert error.startswith("error:") and message in error and name in error, error
        assert not out.exists() or not any(p.is_file() for p in out.rglob("*")), sorted(out.rglob("*"))
