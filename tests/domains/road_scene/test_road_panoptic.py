"""Instance and panoptic predict/evaluate for road scenes: Cityscapes-format files from hand-made frames whose
answer is known per pixel, scores recounted by hand, and the official cityscapesscripts reading our files."""

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from segsuite.core.contracts import Mode
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.instances import Instancer
from segsuite.core.instances.panoptic import ids_from_rgb, split_label_divisor
from segsuite.core.io import STAGING_PREFIX
from segsuite.core.predict import build_instancer
from segsuite.core.task import SegmentationTask
from segsuite.domains.road_scene.datasets import build_datasets
from segsuite.domains.road_scene.labels import cityscapes_id_to_train_id
from tests.domains.road_scene.conftest import Pipeline
from tests.helpers import run_inline

CAR = 13  # Cityscapes trainId of car (label id 26); road is trainId 0 (label id 7)
STEM = "city_000001_000002_leftImg8bit"
CAR_A = (slice(4, 16), slice(3, 15))  # 12x12 = 144 pixels
CAR_B = (slice(20, 30), slice(30, 45))  # 10x15 = 150 pixels
SPECK = (36, slice(0, 2))  # a 2-pixel car, below min_size


@pytest.fixture(scope="module")
def cs_meta(cityscapes_root) -> dict:
    return build_datasets(str(cityscapes_root), crop_size=[32, 32])["train"].meta


def _car_task(pointwise, meta: dict, road: int = 0, car: int = CAR) -> SegmentationTask:
    """Pointwise task: class ``road`` scores the normalised R, class ``car`` the normalised B, the others never win."""
    k = len(meta["class_names"])
    weight, bias = np.zeros((k, 3)), np.full(k, -1e3)
    weight[road, 0], weight[car, 2] = 1.0, 1.0
    bias[[road, car]] = 0.0
    return pointwise.task(meta, weight, bias)


def _two_cars(folder: Path, write_png) -> tuple[Path, np.ndarray]:
    """A red road with two blue cars (the second a less certain blue) and a blue speck, as a Cityscapes frame."""
    photo = np.zeros((40, 60, 3), np.uint8)
    photo[:] = (250, 10, 10)
    photo[CAR_A] = (10, 10, 250)
    photo[CAR_B] = (60, 10, 200)
    photo[SPECK] = (10, 10, 250)
    return write_png(folder / "city" / f"{STEM}.png", photo), photo


def _box(region: tuple[slice, ...], shape=(40, 60)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[region] = True
    return mask


def _p_car(pointwise, photo: np.ndarray) -> np.ndarray:
    """Softmax probability of car per pixel ``(H, W)``: only road and car compete, logits normalised R and B."""
    n = pointwise.normalised(photo)
    return 1.0 / (1.0 + np.exp(-(n[..., 2] - n[..., 0])))


def _run(task, tmp_path: Path, mode: str, things=("person", "car"), **kw) -> list[Path]:
    instancer = Instancer(list(things), task.hparams.class_names, min_size=4)
    return Pipeline.predict(task, tmp_path / "in", tmp_path / mode, mode=mode, instancer=instancer, **kw)


def test_two_cars_give_cityscapes_instance_files(cs_meta, tmp_path, write_png, pointwise):
    _, photo = _two_cars(tmp_path / "in", write_png)
    written = _run(_car_task(pointwise, cs_meta), tmp_path, "instance")
    folder = tmp_path / "instance" / "instances" / "city"
    masks = [folder / "masks" / f"{STEM}_001.png", folder / "masks" / f"{STEM}_002.png"]
    assert set(written) >= {folder / f"{STEM}.txt", folder / f"{STEM}_instanceIds.png",
                            folder / f"{STEM}_instances.csv", *masks}
    assert (tmp_path / "instance" / "labels" / "city" / f"{STEM}.png").is_file()  # the semantic outputs as before

    ids = np.asarray(Image.open(folder / f"{STEM}_instanceIds.png"))
    assert ids.dtype == np.uint16 and ids.shape == (40, 60)
    label_ids, k = split_label_divisor(ids, 1000)
    assert set(zip(label_ids[k >= 0].tolist(), k[k >= 0].tolist())) == {(26, 0), (26, 1)}
    assert (k[CAR_A] == 0).all() and (k[CAR_B] == 1).all() and (k >= 0).sum() == 144 + 150
    assert (ids[SPECK] == 26).all()  # a car pixel outside every instance keeps its label id, as in gtFine
    assert (ids[~_box(CAR_A) & ~_box(CAR_B) & ~_box(SPECK)] == 7).all()

    lines = (folder / f"{STEM}.txt").read_text().splitlines()
    p_car = _p_car(pointwise, photo)
    assert len(lines) == 2
    for line, mask_file, region in zip(lines, masks, (CAR_A, CAR_B)):
        rel, label_id, confidence = line.split(" ")
        assert folder / rel == mask_file and label_id == "26"
        mask = np.asarray(Image.open(mask_file))
        np.testing.assert_array_equal(mask > 0, _box(region))
        assert float(confidence) == pytest.approx(p_car[region].mean(), abs=1e-5)
    assert float(lines[0].split()[2]) > float(lines[1].split()[2])  # the purer blue is the surer car

    with open(folder / f"{STEM}_instances.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["id"], r["class"], r["label_id"], r["pixels"]) for r in rows] == [("1", "car", "26", "144"),
                                                                                 ("2", "car", "26", "150")]
    assert [int(r["instance_id"]) for r in rows] == [26000, 26001]
    assert [(r["row0"], r["row1"], r["col0"], r["col1"]) for r in rows] == [("4", "16", "3", "15"),
                                                                            ("20", "30", "30", "45")]
    assert float(rows[1]["centroid_row"]) == pytest.approx(24.5) and float(rows[1]["centroid_col"]) == 37.0


def test_panoptic_png_matches_its_json(cs_meta, tmp_path, write_png, pointwise):
    _two_cars(tmp_path / "in", write_png)
    written = _run(_car_task(pointwise, cs_meta), tmp_path, "panoptic")
    out = tmp_path / "panoptic"
    assert out / "panoptic.json" in written and not list(tmp_path.rglob(STAGING_PREFIX + "*"))
    data = json.loads((out / "panoptic.json").read_text())
    (annotation,) = data["annotations"]
    assert annotation["image_id"] == "city_000001_000002"  # what cityscapesscripts matches
    assert data["images"] == [{"id": "city_000001_000002", "file_name": f"city/{STEM}.png", "height": 40,
                               "width": 60}]
    segments = ids_from_rgb(np.asarray(Image.open(out / "panoptic" / annotation["file_name"])))
    info = {s["id"]: s for s in annotation["segments_info"]}
    assert set(np.unique(segments)) == {0, *info}
    for sid, s in info.items():
        assert s["area"] == (segments == sid).sum()
    assert sum(s["area"] for s in info.values()) + 2 == 40 * 60  # only the dropped speck is void
    assert (segments[SPECK] == 0).all()
    cars = sorted((s for s in info.values() if s["category_id"] == 26), key=lambda s: s["bbox"][1])
    assert sorted(s["category_id"] for s in info.values()) == [7, 26, 26]
    assert [c["bbox"] for c in cars] == [[3, 4, 12, 12], [30, 20, 15, 10]]
    for car, region in zip(cars, (CAR_A, CAR_B)):
        np.testing.assert_array_equal(segments == car["id"], _box(region))
        assert car["isthing"] == 1 and car["iscrowd"] == 0
    categories = {c["name"]: c for c in data["categories"]}
    assert len(categories) == 19
    assert categories["car"] == {"id": 26, "name": "car", "isthing": 1, "color": [0, 0, 142],
                                 "supercategory": "vehicle"}
    assert categories["road"]["id"] == 7 and categories["road"]["isthing"] == 0


def test_other_class_sets_use_their_label_ids(cs_meta, tmp_path, write_png, pointwise):
    meta = {k: v for k, v in cs_meta.items() if k != "categories"}
    meta.update(class_names=["road", "sky", "car"], num_classes=3, class_colors=[[1, 1, 1], [2, 2, 2], [3, 3, 3]],
                native_ids=[3, 4, 7], native_void_id=255)  # a folder layout's class map
    _two_cars(tmp_path / "in", write_png)
    task = _car_task(pointwise, meta, road=0, car=2)
    _run(task, tmp_path, "instance", things=["car"], outputs=["label"])
    _run(task, tmp_path, "panoptic", things=["car"], outputs=["label"])
    folder = tmp_path / "instance" / "instances" / "city"
    assert set(np.unique(np.asarray(Image.open(folder / f"{STEM}_instanceIds.png")))) == {3, 7, 7000, 7001}
    assert [line.split()[1] for line in (folder / f"{STEM}.txt").read_text().splitlines()] == ["7", "7"]
    assert set(np.unique(np.asarray(Image.open(tmp_path / "panoptic" / "labels" / "city" / f"{STEM}.png")))) == {3, 7}
    data = json.loads((tmp_path / "panoptic" / "panoptic.json").read_text())
    assert data["categories"] == [{"id": 3, "name": "road", "isthing": 0, "color": [1, 1, 1]},
                                  {"id": 4, "name": "sky", "isthing": 0, "color": [2, 2, 2]},
                                  {"id": 7, "name": "car", "isthing": 1, "color": [3, 3, 3]}]
    assert sorted(s["category_id"] for s in data["annotations"][0]["segments_info"]) == [3, 7, 7]


def test_border_channel_splits_touching_cars(cs_meta, tmp_path, write_png, pointwise):
    photo = np.zeros((24, 40, 3), np.uint8)
    photo[:] = (250, 10, 10)
    photo[4:16, 3:27] = (10, 10, 250)  # two 12x12 cars side by side...
    photo[4:16, 15] = (10, 250, 250)  # ...with a border line between them (green: border, blue: car)
    write_png(tmp_path / "in" / "a.png", photo)
    task = SegmentationTask(model={"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": 20,
                                   "kernel_size": 1}, num_classes=19, class_names=cs_meta["class_names"],
                            data_meta=cs_meta, domain="road_scene", instances={"border_channel": True})
    with torch.no_grad():  # road: R, car: B, border logit: 6 G - 3
        task.net.weight.zero_()
        task.net.weight[0, 0], task.net.weight[CAR, 2], task.net.weight[19, 1] = 1.0, 1.0, 6.0
        task.net.bias.fill_(-1e3)
        task.net.bias[[0, CAR]], task.net.bias[19] = 0.0, -3.0
    task.eval()
    counts = {}
    for border in ("auto", "off"):  # off: the network's class channels only
        instancer = Instancer(["car"], cs_meta["class_names"], border=border)
        Pipeline.predict(task, tmp_path / "in", tmp_path / border, outputs=["label"], mode="instance",
                         instancer=instancer)
        with open(tmp_path / border / "instances" / "a_instances.csv") as fh:
            counts[border] = [int(r["pixels"]) for r in csv.DictReader(fh)]
    assert len(counts["auto"]) == 2 and sum(counts["auto"]) == 12 * 24 and min(counts["auto"]) >= 12 * 11
    assert counts["off"] == [12 * 24]


def test_bad_modes_and_existing_outputs_are_refused_before_work(cs_meta, tmp_path, write_png, pointwise):
    _two_cars(tmp_path / "in", write_png)
    task = _car_task(pointwise, cs_meta)
    instancer = Instancer(["car"], cs_meta["class_names"])
    run = lambda **kw: Pipeline.predict(task, tmp_path / "in", tmp_path / "out", **kw)  # noqa: E731
    with pytest.raises(ConfigError, match="task='bogus'.*semantic, instance, panoptic"):
        run(mode="bogus", instancer=instancer)
    with pytest.raises(ConfigError, match="task=panoptic needs an `instancer`"):  # the core builds it for the job
        build_instancer(OmegaConf.create({}), Mode.PANOPTIC, task.hparams, False)
    zero_car = _car_task(pointwise, {**cs_meta, "native_ids": [0 if i == CAR else i + 1 for i in range(19)]})
    with pytest.raises(ConfigError, match="'car': 0"):  # label id 0 cannot carry instances in the ids encoding
        Pipeline.predict(zero_car, tmp_path / "in", tmp_path / "out", mode="instance", instancer=instancer)
    assert not (tmp_path / "out").exists()

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "panoptic.json").write_text("{}")
    with pytest.raises(DataError, match="panoptic.json already exists"):
        run(mode="panoptic", instancer=instancer)
    mask = write_png(tmp_path / "out" / "instances" / "city" / "masks" / f"{STEM}_007.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(DataError, match=f"instance masks of city/{STEM}.png already exist"):
        run(mode="instance", instancer=instancer)
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == [mask.name, "panoptic.json"]
    run(mode="panoptic", instancer=instancer, overwrite=True)
    assert json.loads((tmp_path / "out" / "panoptic.json").read_text())["annotations"]

    _two_cars(tmp_path / "two" / "x", write_png)  # the same Cityscapes frame name in two folders
    _two_cars(tmp_path / "two" / "y", write_png)
    with pytest.raises(DataError, match="both be image_id 'city_000001_000002'"):
        Pipeline.predict(task, tmp_path / "two", tmp_path / "out2", mode="panoptic", instancer=instancer)
    assert not (tmp_path / "out2").exists()


# ----------------------------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------------------------


def _stuff_counts(pred: np.ndarray, gt: np.ndarray, cls: int) -> tuple[float, int, int, int]:
    """(IoU if matched, TP, FP, FN) of one stuff class in one image, by the panoptic rules: one segment per class,
    a match above IoU 0.5 with void pixels (255) left out of the union, a prediction mostly on void is no FP."""
    p, g, void = pred == cls, gt == cls, gt == 255
    inter, on_void = (p & g).sum(), (p & void).sum()
    iou = inter / (p.sum() + g.sum() - inter - on_void) if p.any() and g.any() else 0.0
    if iou > 0.5:
        return iou, 1, 0, 0
    return 0.0, 0, int(p.any() and on_void <= 0.5 * p.sum()), int(g.any())


def _stuff_classifier(pointwise, dataset) -> SegmentationTask:
    """A pointwise task fitted by least squares to the pixels of ``dataset``, never predicting a thing class."""
    x, y = [], []
    for image, label in dataset.files:
        gt = dataset.decode(label).ravel()
        x.append(pointwise.normalised(np.asarray(Image.open(image))).reshape(-1, 3)[gt != 255])
        y.append(gt[gt != 255])
    features = np.concatenate(x)
    fit, *_ = np.linalg.lstsq(np.c_[features, np.ones(len(features))], np.eye(19)[np.concatenate(y)], rcond=None)
    fit[:, 11:] = 0.0
    fit[3, 11:] = -1e3  # person .. bicycle (trainIds 11-18) never win
    return pointwise.task(dataset.meta, fit[:3].T, fit[3])


def test_evaluate_panoptic_scores_match_a_hand_count(cityscapes_root, tmp_path, pointwise):
    datasets = build_datasets(str(cityscapes_root))
    val = datasets["val"]
    task = _stuff_classifier(pointwise, val)  # stuff right in places, every person and car missed
    instancer = Instancer(["person", "car"], val.meta["class_names"], min_size=4)
    out = tmp_path / "eval"
    result = Pipeline.evaluate(task, datasets, out, mode="panoptic", instancer=instancer)
    Pipeline.predict(task, cityscapes_root / "leftImg8bit" / "val", tmp_path / "pred", outputs=["label"])

    stuff = [c for c in range(19) if c not in (11, CAR)]
    counts = np.zeros((19, 4))  # iou sum, tp, fp, fn
    for image, label in val.files:
        pred_ids = np.asarray(Image.open(tmp_path / "pred" / "labels" / image.parent.name / image.name))
        pred, gt = cityscapes_id_to_train_id()[pred_ids], val.decode(label)
        for c in stuff:
            counts[c] += _stuff_counts(pred, gt, c)
        raw = np.asarray(Image.open(str(label).replace("_labelIds", "_instanceIds")))
        for c, label_id in ((11, 24), (CAR, 26)):  # every ground-truth person and car is a false negative
            counts[c, 3] += len(np.unique(raw[(raw // 1000 == label_id) & (gt != 255)]))
    iou, tp, fp, fn = counts.T
    seen = tp + fp + fn > 0
    pq = np.where(seen, iou / np.maximum(tp + 0.5 * fp + 0.5 * fn, 1e-9), np.nan)
    assert fn[CAR] > 0 and tp[stuff].sum() > 0
    report = json.loads((out / "panoptic.json").read_text())
    assert result["pq"] == pytest.approx(np.nanmean(pq[seen]), abs=1e-9) == report["pq"]
    assert result["pq_things"] == 0.0 and result["thing_f1"] == 0.0 and result["thing_recall"] == 0.0
    per_class = {row["class"]: row for row in report["per_class"]}
    for c, name in enumerate(val.meta["class_names"]):
        row = per_class[name]
        assert (row["tp"], row["fp"], row["fn"]) == tuple(int(v) for v in (tp[c], fp[c], fn[c])), name
    assert report["split"] == "val" and report["checkpoint"] == "model.ckpt" and report["things"] == ["person", "car"]
    assert report["instance_targets"] == "instanceIds"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pq"] == result["pq"] and "miou" in metrics and (out / "panoptic_per_class.csv").is_file()


# ----------------------------------------------------------------------------------------------------------------
# the official tools
# ----------------------------------------------------------------------------------------------------------------


def test_official_instance_evaluation_reads_our_files(cs_meta, tmp_path, write_png, pointwise, monkeypatch):
    cs_inst = pytest.importorskip("cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling")
    # cityscapesscripts 2.3 still calls np.in1d (removed in NumPy 2.4)
    monkeypatch.setattr(np, "in1d", lambda a, b, invert=False: np.isin(a, b, invert=invert).ravel(), raising=False)
    # and its JSON dumps (ground-truth cache, matches.json in the working folder) fail on NumPy integers: skip them
    monkeypatch.setattr(cs_inst, "writeDict2JSON", lambda data, path: None)
    _two_cars(tmp_path / "in", write_png)
    _run(_car_task(pointwise, cs_meta), tmp_path, "instance")
    gt = np.full((40, 60), 7, np.uint16)  # road, and the two cars as gtFine instances
    gt[CAR_A], gt[CAR_B] = 26000, 26001
    gt_file = write_png(tmp_path / "gt" / "city_000001_000002_gtFine_instanceIds.png", gt)
    args = copy.copy(cs_inst.args)
    args.quiet, args.JSONOutput, args.colorized = True, False, False
    args.gtInstancesFile = str(tmp_path / "gtInstances.json")  # absent: computed from the PNG
    args.predictionPath = str(tmp_path / "instance")
    result = cs_inst.evaluateImgLists([str(tmp_path / "instance" / "instances" / "city" / f"{STEM}.txt")],
                                      [str(gt_file)], args)
    assert result["averages"]["classes"]["car"]["ap"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------------------------
# the entry points, with the short training run shared by the road-scene entry-point tests
# ----------------------------------------------------------------------------------------------------------------


def _official_panoptic(data: Path, pred_json: Path, tmp_path: Path, monkeypatch) -> dict:
    """cityscapesscripts' PQ of our panoptic.json + PNGs against gtFine instanceIds converted by its own script."""
    prepare = pytest.importorskip("cityscapesscripts.preparation.createPanopticImgs")
    cs_pan = pytest.importorskip("cityscapesscripts.evaluation.evalPanopticSemanticLabeling")
    (tmp_path / "gt").mkdir()
    prepare.convert2panoptic(cityscapesPath=str(data / "gtFine"), outputFolder=str(tmp_path / "gt"), setNames=["val"])
    # one process instead of a pool over every core
    monkeypatch.setattr(cs_pan, "pq_compute_multi_core",
                        lambda matched, gt, pred, cats: cs_pan.pq_compute_single_core(0, matched, gt, pred, cats))
    gt_json = tmp_path / "gt" / "cityscapes_panoptic_val.json"
    return cs_pan.evaluatePanoptic(str(gt_json), str(gt_json.with_suffix("")), str(pred_json),
                                   str(pred_json.with_suffix("")), str(tmp_path / "official.json"))


@pytest.mark.slow
def test_entry_points_write_panoptic_files_and_pq_agrees_with_cityscapesscripts(road_run, run_entry, tmp_path,
                                                                                  monkeypatch):
    data, ckpt = road_run["data"], road_run["ckpt"]
    common = ["domain=road_scene", f"checkpoint={ckpt}", "instancer.min_size=4"]  # 32x64 scenes: small people
    runs = run_entry(
        ("predict", *common, "task=panoptic", f"input={data / 'leftImg8bit' / 'val'}", f"output={tmp_path / 'pan'}",
         f"hydra.run.dir={tmp_path / 'h1'}"),
        ("evaluate", *common, "task=panoptic", f"domain.datamodule.datasets.root={data}",
         f"output_dir={tmp_path / 'eval'}", f"hydra.run.dir={tmp_path / 'h3'}"),
    )
    for proc in runs:
        assert proc.returncode == 0, proc.stderr[-3000:]
    images = sorted((data / "leftImg8bit" / "val").rglob("*.png"))
    pan = json.loads((tmp_path / "pan" / "panoptic.json").read_text())
    assert [a["image_id"] for a in pan["annotations"]] == [p.name.replace("_leftImg8bit.png", "") for p in images]
    for image in images:
        assert (tmp_path / "pan" / "panoptic" / image.parent.name / f"{image.stem}_panoptic.png").is_file()
        assert (tmp_path / "pan" / "labels" / image.parent.name / image.name).is_file()

    report = json.loads((tmp_path / "eval" / "panoptic.json").read_text())
    per_class = {row["class"]: row for row in report["per_class"]}
    print(f"PQ on the synthetic scenes (4 val frames of 32x64, one short training epoch): PQ {report['pq']:.3f} "
          f"(things {report['pq_things']:.3f}, stuff {report['pq_stuff']:.3f}), car PQ {per_class['car']['pq']:.3f} "
          f"(tp {per_class['car']['tp']}, fp {per_class['car']['fp']}, fn {per_class['car']['fn']}), person PQ "
          f"{per_class['person']['pq']:.3f} (tp {per_class['person']['tp']}, fp {per_class['person']['fp']}, fn "
          f"{per_class['person']['fn']}), thing F1 {report['f1']:.3f}")
    assert per_class["car"]["true_count"] > 0 and per_class["person"]["true_count"] > 0

    official = _official_panoptic(data, tmp_path / "pan" / "panoptic.json", tmp_path, monkeypatch)
    print(f"cityscapesscripts on the same predictions: PQ {official['All']['pq']:.3f} (things "
          f"{official['Things']['pq']:.3f}, stuff {official['Stuff']['pq']:.3f})")
    assert report["pq"] == pytest.approx(official["All"]["pq"], abs=1e-9)
    assert report["pq_things"] == pytest.approx(official["Things"]["pq"], abs=1e-9)
    assert report["pq_stuff"] == pytest.approx(official["Stuff"]["pq"], abs=1e-9)
    ids = {c["name"]: c["id"] for c in pan["categories"]}
    for name, row in per_class.items():
        if row["tp"] + row["fp"] + row["fn"]:
            assert row["pq"] == pytest.approx(official["per_class"][ids[name]]["pq"], abs=1e-9), name


@pytest.mark.slow
def test_bad_task_or_thing_class_exits_2_and_writes_nothing(road_run, run_entry, tmp_path, capsys):
    """A bad task through ``scripts/predict.py`` (the real CLI), an unknown thing class through ``evaluate`` in this
    process (the same ``segsuite.core.cli.run``; a subprocess costs 5-7 s of imports): exit 2, one line, nothing."""
    data, ckpt = road_run["data"], road_run["ckpt"]
    (bogus,) = run_entry(
        ("predict", "domain=road_scene", f"checkpoint={ckpt}", "task=bogus", f"input={data / 'leftImg8bit' / 'val'}",
         f"output={tmp_path / 'pred'}", f"hydra.run.dir={tmp_path / 'h1'}"),
    )
    assert "Traceback" not in bogus.stderr
    unicorn = run_inline("evaluate", "domain=road_scene", f"checkpoint={ckpt}", "task=panoptic",
                         "instancer.things=[unicorn]", f"domain.datamodule.datasets.root={data}",
                         f"output_dir={tmp_path / 'eval'}")
    for (code, stderr), words in (((bogus.returncode, bogus.stderr), ["task='bogus'", "semantic, instance, panoptic"]),
                                  ((unicorn, capsys.readouterr().err), ["unicorn", "road, sidewalk, building",
                                                                        "bicycle"])):
        assert code == 2, stderr[-2000:]
        error = stderr.strip().splitlines()[-1]
        assert error.startswith("error:") and all(w in error for w in words), error
    assert not (tmp_path / "pred").exists() and not (tmp_path / "eval").exists()


def test_shared_image_ids_are_refused_before_work_and_a_reused_writer_keeps_no_state(tmp_path):
    from segsuite.core.contracts import Item
    from segsuite.domains.road_scene.writer import SceneWriter

    writer = SceneWriter()
    job = type("J", (), {"mode": Mode.PANOPTIC})()
    a = Item("a", tmp_path / "x" / "frame.png", Path("x/frame.png"))
    b = Item("b", tmp_path / "x" / "frame.jpg", Path("x/frame.jpg"))
    with pytest.raises(DataError, match="inputs x/frame.png and x/frame.jpg would both be image_id 'x/frame'"):
        writer.run_outputs([a, b], tmp_path / "out", True, job)
    for _ in range(2):  # the failed run above leaves nothing behind to report a false duplicate
        assert writer.run_outputs([a], tmp_path / "out", True, job) == {"panoptic_json": tmp_path / "out" /
                                                                           "panoptic.json"}
