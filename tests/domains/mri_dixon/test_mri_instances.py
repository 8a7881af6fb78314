"""Instance and panoptic outputs of the Dixon domain on hand-built cases.

A "threshold" checkpoint (a fixed 1x1 convolution) labels kidneys where the normalised water signal is above its
mean and liver where the out-phase signal is; the test volumes are zero except for box-shaped blobs, so the
prediction is known exactly: two kidney blobs give two instances, a liver block one stuff segment. With a border
channel (fat above its mean), a plane of fat splits two touching kidney blobs.
"""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from segsuite.core.cli import run
from segsuite.core.evaluate import evaluate as evaluate_entry
from segsuite.core.instances import Instancer
from segsuite.core.instances.panoptic import split_label_divisor
from segsuite.core.predict import predict as predict_entry
from segsuite.core.task import SegmentationTask
from segsuite.domains.mri_dixon.dataset import build_datasets
from segsuite.domains.mri_dixon.fatfraction import mean_fat_fraction
from segsuite.domains.mri_dixon.io import read_nifti
from segsuite.domains.mri_dixon.phantom import CHANNELS, LABELS, TISSUES, dataset_json
from segsuite.domains.mri_dixon.writer import instance_rows
from tests.helpers import compose_config, run_script

SHAPE = (20, 16, 10)
KIDNEY_A = np.s_[3:7, 4:10, 2:7]  # 4 x 6 x 5 = 120 voxels
KIDNEY_B = np.s_[12:17, 5:11, 3:8]  # 5 x 6 x 5 = 150 voxels
LIVER = np.s_[8:11, 0:4, 0:5]  # 3 x 4 x 5 = 60 voxels, touches neither kidney
WATER, FAT, OUT_PHASE = (CHANNELS.index(n) for n in ("water", "fat", "out_phase"))
KIDNEYS, LIVER_VALUE = LABELS["kidneys"], LABELS["liver"]
PD, KIDNEY_FF = TISSUES["kidneys"]  # the phantom's kidney proton density and fat fraction (0.02)


@pytest.fixture(scope="module")
def meta(phantom_root) -> dict:
    """The phantom data's checkpoint metadata (channels water, fat, in_phase, out_phase; 7 labels), without
    resampling: the thresholds below answer the same at any spacing, so the expected labels are exact."""
    return {**build_datasets(str(phantom_root), patch_size=[32, 32])["train"].meta, "resample": False}


def _threshold_checkpoint(path, meta: dict, border: bool = False):
    """Kidneys where water is above its mean, liver where out-phase is, else background; with ``border`` one more
    output, the border logit, positive where fat is above its mean."""
    k = meta["num_classes"]
    task = SegmentationTask(model={"_target_": "torch.nn.Conv2d", "in_channels": meta["in_channels"],
                                   "out_channels": k + int(border), "kernel_size": 1},
                            num_classes=k, ignore_index=meta["ignore_index"], class_names=meta["class_names"],
                            data_meta=meta, domain="mri_dixon", instances={"border_channel": True} if border else None)
    with torch.no_grad():
        weight, bias = task.net.weight[:, :, 0, 0], task.net.bias
        weight.zero_()
        bias.fill_(-100.0)  # the other classes never win
        bias[[0, KIDNEYS, LIVER_VALUE]] = 0.0
        weight[KIDNEYS, WATER], weight[LIVER_VALUE, OUT_PHASE] = 10.0, 10.0
        if border:
            weight[k, FAT], bias[k] = 10.0, 0.0
    torch.save({"hyper_parameters": dict(task.hparams), "state_dict": task.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def threshold_checkpoint(tmp_path_factory, meta):
    return _threshold_checkpoint(tmp_path_factory.mktemp("threshold") / "threshold.ckpt", meta)


def _case_images(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Channel images ``(X, Y, Z)`` with two kidney blobs (the phantom's kidney water/fat plus noise) and a liver
    block (out-phase only), and the label volume the threshold checkpoint predicts for them."""
    rng = np.random.default_rng(seed)
    images = {n: np.zeros(SHAPE, np.float32) for n in CHANNELS}
    label = np.zeros(SHAPE, np.uint8)
    for blob in (KIDNEY_A, KIDNEY_B):
        size = images["water"][blob].shape
        images["water"][blob] = PD * (1 - KIDNEY_FF) + rng.normal(0, 1.0, size)
        images["fat"][blob] = np.abs(PD * KIDNEY_FF + rng.normal(0, 1.0, size))
        label[blob] = KIDNEYS
    images["out_phase"][LIVER] = 100.0
    label[LIVER] = LIVER_VALUE
    images["in_phase"] = images["water"] + images["fat"]
    return images, label


def _write_case(folder, case: str, images: dict[str, np.ndarray], affine, nifti_writer) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(CHANNELS):
        nifti_writer(folder / f"{case}_{i:04d}.nii.gz", images[name], affine)


@pytest.fixture
def case(tmp_path, affine_factory, nifti_writer) -> dict:
    """One hand-built case as nnU-Net files on an oblique, LPS-like grid (so prediction reorients)."""
    images, label = _case_images()
    affine = affine_factory(flips=(-1, 1, 1))
    _write_case(tmp_path / "in", "blobs", images, affine, nifti_writer)
    return {"folder": tmp_path / "in", "images": images, "label": label, "affine": affine}


def _predict(checkpoint, case: dict, output, mode: str) -> list:
    """What scripts/predict.py runs, with every kidney voxel in an instance (min_size 0)."""
    cfg = compose_config("predict", ["domain=mri_dixon", f"checkpoint={checkpoint}", f"input={case['folder']}",
                                     f"output={output}", "device=cpu", f"task={mode}", "instancer.min_size=0"])
    return run(predict_entry, cfg)


def _assert_same_geometry(written: nib.Nifti1Image, source: nib.Nifti1Image) -> None:
    assert written.shape == source.shape
    np.testing.assert_array_equal(written.affine, source.affine)  # exactly, bit for bit
    np.testing.assert_array_equal(written.header.get_sform(), source.header.get_sform())
    np.testing.assert_array_equal(written.header.get_qform(), source.header.get_qform())
    for code in ("sform_code", "qform_code"):
        assert written.header[code] == source.header[code]


def _rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_instance_mode_writes_two_kidneys_on_the_input_grid(threshold_checkpoint, case, tmp_path):
    out = tmp_path / "pred.nii.gz"
    written = _predict(threshold_checkpoint, case, out, "instance")
    assert sorted(p.name for p in written) == ["pred.nii.gz", "pred_instances.csv", "pred_instances.nii.gz"]
    source = nib.load(case["folder"] / "blobs_0000.nii.gz")
    labels_img, instances_img = nib.load(out), nib.load(tmp_path / "pred_instances.nii.gz")
    np.testing.assert_array_equal(np.asanyarray(labels_img.dataobj), case["label"])  # the known prediction
    _assert_same_geometry(instances_img, source)
    assert instances_img.get_data_dtype() == np.int32
    ids = np.asanyarray(instances_img.dataobj)
    blobs = {}
    for blob in (KIDNEY_A, KIDNEY_B):
        values = np.unique(ids[blob])
        assert len(values) == 1 and values[0] > 0  # one instance fills each blob...
        blobs[int(values[0])] = blob
    assert sorted(blobs) == [1, 2] and (ids > 0).sum() == 120 + 150  # ...and nothing else

    rows = _rows(tmp_path / "pred_instances.csv")
    assert [int(r["id"]) for r in rows] == [1, 2] and {r["class"] for r in rows} == {"kidneys"}
    affine = case["affine"]
    voxel_mm3 = abs(np.linalg.det(affine[:3, :3]))
    assert voxel_mm3 == pytest.approx(1.5 * 0.8 * 3.0, rel=1e-6)
    for row in rows:
        blob = blobs[int(row["id"])]
        mask = np.zeros(SHAPE, bool)
        mask[blob] = True
        assert int(row["voxels"]) == mask.sum()
        assert float(row["volume_ml"]) == pytest.approx(mask.sum() * voxel_mm3 / 1000, rel=1e-6)
        centre = np.array([(s.start + s.stop - 1) / 2 for s in blob])
        np.testing.assert_allclose([float(row[f"centroid_{a}"]) for a in "ijk"], centre, atol=1e-9)
        world = affine[:3, :3] @ centre + affine[:3, 3]  # scanner RAS+ mm
        np.testing.assert_allclose([float(row[f"centroid_{a}"]) for a in "xyz"], world, atol=1e-6)
        assert [int(row[f"{a}{e}"]) for a in "ijk" for e in "01"] == [v for s in blob for v in (s.start, s.stop)]
        ff = float(row["mean_fat_fraction"])
        assert ff == pytest.approx(KIDNEY_FF, abs=0.003)  # the phantom's kidney FF, through noise
        assert ff == pytest.approx(mean_fat_fraction(case["images"]["water"], case["images"]["fat"], mask), rel=1e-5)


def test_panoptic_volume_decodes_to_the_class_map_and_instances(threshold_checkpoint, case, tmp_path):
    out = tmp_path / "out"
    _predict(threshold_checkpoint, case, out, "panoptic")
    assert sorted(p.name for p in out.iterdir()) == [
        "blobs.nii.gz", "blobs_instances.csv", "blobs_instances.nii.gz", "blobs_panoptic.json",
        "blobs_panoptic.nii.gz"]
    source = nib.load(case["folder"] / "blobs_0000.nii.gz")
    panoptic_img = nib.load(out / "blobs_panoptic.nii.gz")
    _assert_same_geometry(panoptic_img, source)
    assert panoptic_img.get_data_dtype() == np.int32
    panoptic = np.asanyarray(panoptic_img.dataobj)
    ids = np.asanyarray(nib.load(out / "blobs_instances.nii.gz").dataobj)
    categories, numbers = split_label_divisor(panoptic, 1000)
    np.testing.assert_array_equal(categories, np.asanyarray(nib.load(out / "blobs.nii.gz").dataobj))
    np.testing.assert_array_equal(numbers, np.where(ids > 0, ids - 1, -1))  # k = 0, 1 in order of instance id
    assert sorted(np.unique(panoptic).tolist()) == [0, LIVER_VALUE, 1000 * KIDNEYS, 1000 * KIDNEYS + 1]

    info = json.loads((out / "blobs_panoptic.json").read_text())
    assert info["label_divisor"] == 1000
    assert {c["name"]: c["id"] for c in info["categories"]} == LABELS
    voxel_ml = abs(np.linalg.det(case["affine"][:3, :3])) / 1000
    segments = {s["id"]: s for s in info["segments"]}
    assert sorted(segments) == [LIVER_VALUE, 3000, 3001]
    assert segments[LIVER_VALUE] == pytest.approx({"id": 1, "category": 1, "name": "liver", "isthing": False,
                                                   "instance": None, "voxels": 60, "volume_ml": 60 * voxel_ml})
    for code, instance in ((3000, 1), (3001, 2)):
        segment = segments[code]
        assert (segment["category"], segment["name"], segment["isthing"]) == (KIDNEYS, "kidneys", True)
        assert segment["instance"] == instance and segment["voxels"] == (ids == instance).sum()
        assert segment["volume_ml"] == pytest.approx(segment["voxels"] * voxel_ml)
    assert len(_rows(out / "blobs_instances.csv")) == 2  # the instances CSV comes with panoptic outputs too


def test_phantom_kidneys_are_two_instances_with_the_phantom_fat_fraction(phantom_root):
    """Cut from the phantom's reference labels: two kidneys per case, their mean FF the phantom's (Rician noise on
    the small fat signal biases it up a little), as the instancer of conf/instancer/default.yaml sees them."""
    instancer = Instancer(["kidneys"], list(LABELS), min_size=16)
    truth = json.loads((phantom_root / "phantom_truth.json").read_text())
    for case in ("phantom_000", "phantom_001", "phantom_002"):
        label = read_nifti(phantom_root / "labelsTr" / f"{case}.nii.gz")
        water, fat = (read_nifti(phantom_root / "imagesTr" / f"{case}_000{i}.nii.gz").array for i in (0, 1))
        rows = instance_rows(case, instancer(label.array), list(LABELS), label, water, fat)
        assert len(rows) == 2 and sum(r["voxels"] for r in rows) == (label.array == KIDNEYS).sum()
        for row in rows:
            assert truth[case]["kidneys"] - 0.002 < row["mean_fat_fraction"] < truth[case]["kidneys"] + 0.012


def test_border_channel_splits_touching_kidneys(meta, tmp_path, affine_factory, nifti_writer, capsys):
    """Two kidney blobs touching through a one-voxel plane of fat: one instance by connected components, two when
    the model's border channel (fat) marks the plane; the border volume is cut on the input's axes."""
    checkpoint = _threshold_checkpoint(tmp_path / "border.ckpt", meta, border=True)
    images = {n: np.zeros(SHAPE, np.float32) for n in CHANNELS}
    images["water"][3:15, 4:10, 2:8] = 90.0  # 12 x 6 x 6 voxels of kidney...
    images["fat"][9, 4:10, 2:8] = 100.0  # ...split by the plane i = 9 (border probability ~1)
    folder = tmp_path / "touching"
    _write_case(folder, "touching", images, affine_factory(flips=(1, -1, 1)), nifti_writer)
    counts = {}
    for border in ("auto", "off"):
        out = tmp_path / f"{border}.nii.gz"
        cfg = compose_config("predict", ["domain=mri_dixon", f"checkpoint={checkpoint}", f"input={folder}",
                                         f"output={out}", "device=cpu", "task=instance", f"instancer.border={border}"])
        run(predict_entry, cfg)
        ids = np.asanyarray(nib.load(tmp_path / f"{border}_instances.nii.gz").dataobj)
        counts[border] = int(ids.max())
        assert (ids > 0).sum() == 12 * 6 * 6
        if border == "auto":
            left, right = ids[3:9, 4:10, 2:8], ids[10:15, 4:10, 2:8]
            assert len(np.unique(left)) == len(np.unique(right)) == 1 and left[0, 0, 0] != right[0, 0, 0]
    assert counts == {"auto": 2, "off": 1}


def _dataset(root, cases: dict[str, tuple[dict, np.ndarray]], affine, nifti_writer):
    """An nnU-Net data set with the phantom's dataset.json and ``cases`` (name -> (images, label)) in imagesTs/."""
    root.mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps(dataset_json(len(cases))))
    training = {f"train_{i}": _case_images(seed=i + 1) for i in range(2)}  # the builder splits these (train, val)
    for split, group in (("Ts", cases), ("Tr", training)):
        (root / f"labels{split}").mkdir()
        for name, (images, label) in group.items():
            _write_case(root / f"images{split}", name, images, affine, nifti_writer)
            nifti_writer(root / f"labels{split}" / f"{name}.nii.gz", label, affine)
    return root


def _evaluate(checkpoint, root, out, capsys, *extra):
    cfg = compose_config("evaluate", ["domain=mri_dixon", f"checkpoint={checkpoint}", f"output_dir={out}",
                                      "device=cpu", f"domain.datamodule.datasets.root={root}",
                                      "domain.evaluation.split=test", "domain.evaluation.overlays=false", *extra])
    result = run(evaluate_entry, cfg)
    return result, capsys.readouterr().out


def test_evaluate_panoptic_perfect_prediction_gives_pq_1(threshold_checkpoint, tmp_path, affine_factory,
                                                         nifti_writer, capsys):
    root = _dataset(tmp_path / "data", {"blobs": _case_images()}, affine_factory(), nifti_writer)
    out = tmp_path / "eval"
    result, stdout = _evaluate(threshold_checkpoint, root, out, capsys, "task=panoptic")
    assert result["pq"] == 1.0 and result["f1"] == 1.0 and result["panoptic"]["pq_things"] == 1.0
    report = json.loads((out / "panoptic.json").read_text())
    per_class = {c["class"]: c for c in report["per_class"]}
    assert report["pq"] == 1.0 and report["cases"] == ["blobs"]
    assert per_class["kidneys"]["pq"] == 1.0 and per_class["kidneys"]["tp"] == 2
    assert per_class["liver"]["pq"] == 1.0 and per_class["background"]["pq"] == 1.0
    assert per_class["spleen"]["pq"] is None  # never seen: left out of the means
    assert json.loads((out / "metrics.json").read_text())["pq"] == 1.0
    assert [r["class"] for r in _rows(out / "panoptic_per_class.csv")][:4] == ["background", "liver", "spleen",
                                                                              "kidneys"]
    assert _rows(out / "instances_per_case.csv") == [
        {"case": "blobs", "class": "kidneys", "predicted": "2", "true": "2", "tp": "2", "fp": "0", "fn": "0",
         "pq": "1.0"}]
    # the predictions are the files predict writes (one writer), e.g. the panoptic volume with its segments
    assert sorted(p.name for p in (out / "predictions").iterdir()) == [
        "blobs.nii.gz", "blobs_instances.csv", "blobs_instances.nii.gz", "blobs_panoptic.json", "blobs_panoptic.nii.gz"]
    assert "panoptic quality 1.0000" in stdout


def test_evaluate_counts_a_missed_kidney(threshold_checkpoint, tmp_path, affine_factory, nifti_writer, capsys):
    images, label = _case_images()
    label[0:2, 12:16, 7:10] = KIDNEYS  # a third kidney (24 voxels) the images do not show: a false negative
    root = _dataset(tmp_path / "data", {"missed": (images, label)}, affine_factory(), nifti_writer)
    out = tmp_path / "eval"
    result, _ = _evaluate(threshold_checkpoint, root, out, capsys, "task=instance")
    # kidneys: TP 2, FN 1 -> SQ 1, RQ 2 / (2 + 0.5) = 0.8; background: IoU = true bg / (true bg + 24)
    background = int((label == 0).sum())
    background_iou = background / (background + 24)
    assert result["panoptic"]["pq_things"] == pytest.approx(0.8)
    assert result["pq"] == pytest.approx((background_iou + 1.0 + 0.8) / 3)
    assert result["f1"] == pytest.approx(0.8) and result["panoptic"]["recall"] == pytest.approx(2 / 3)
    row = _rows(out / "instances_per_case.csv")[0]
    assert (row["predicted"], row["true"], row["tp"], row["fp"], row["fn"]) == ("2", "3", "2", "0", "1")
    assert float(row["pq"]) == pytest.approx(0.8)


def test_evaluate_leaves_ignore_voxels_out(threshold_checkpoint, tmp_path, affine_factory, nifti_writer, capsys):
    """Voxels labelled ``ignore`` in dataset.json count for no label: half of one kidney and a background slab."""
    images, label = _case_images()
    label[3:5, 4:10, 2:7] = 9  # 60 of kidney A's 120 voxels
    label[0:2, :, :] = 9  # background the threshold model calls background
    root = _dataset(tmp_path / "data", {"blobs": (images, label)}, affine_factory(), nifti_writer)
    spec = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**spec, "labels": {**spec["labels"], "ignore": 9}}))
    result, _ = _evaluate(threshold_checkpoint, root, tmp_path / "eval", capsys)
    kidneys = next(r for r in result["per_case"] if r["label"] == "kidneys")
    assert kidneys["dice"] == 1.0 and kidneys["hd95_mm"] == 0.0  # the ignored half is not a false positive
    assert kidneys["ref_volume_ml"] == pytest.approx(kidneys["pred_volume_ml"])
    pixels = {c["class"]: c["pixels"] for c in result["per_class"]}
    assert pixels["kidneys"] == 270 - 60 and sum(pixels.values()) == int((label != 9).sum())


def test_instance_outputs_are_named_beside_the_label_output(tmp_path, meta):
    from segsuite.core.contracts import DataMeta, Item, Job, Mode, ModelInfo
    from segsuite.domains.mri_dixon.writer import DixonWriter

    model = ModelInfo(None, DataMeta.from_dict(meta), meta["num_classes"], False)
    item = Item("a", {})
    paths = DixonWriter().outputs(item, tmp_path / "out" / "p.nii", False, Job(model, Mode.PANOPTIC))
    assert [p.name for p in paths.values()] == ["p.nii", "p_instances.nii", "p_instances.csv", "p_panoptic.nii",
                                                "p_panoptic.json"]
    assert DixonWriter().outputs(item, tmp_path / "o.nii.gz", False, Job(model)) == {"labels": tmp_path / "o.nii.gz"}


@pytest.mark.slow  # a subprocess: ~10 s of imports on 2 CPU cores
def test_predict_script_writes_instances(conv_checkpoint, phantom_root, tmp_path):
    images = phantom_root / "imagesTr" / "phantom_000_000?.nii.gz"
    out = tmp_path / "pred.nii.gz"
    run_script("predict", "domain=mri_dixon", f"checkpoint={conv_checkpoint}", f"input={images}", f"output={out}",
               f"hydra.run.dir={tmp_path / 'hydra'}", "task=instance", "instancer.min_size=0", "device=cpu")
    assert sorted(p.name for p in tmp_path.glob("pred*")) == ["pred.nii.gz", "pred_instances.csv",
                                                             "pred_instances.nii.gz"]
    source = nib.load(phantom_root / "imagesTr" / "phantom_000_0000.nii.gz")
    instances_img = nib.load(tmp_path / "pred_instances.nii.gz")
    _assert_same_geometry(instances_img, source)
    ids = np.asanyarray(instances_img.dataobj)
    labels = np.asanyarray(nib.load(out).dataobj)
    np.testing.assert_array_equal(ids > 0, labels == KIDNEYS)  # min_size 0: every kidney voxel is in an instance
    assert ids.max() > 0 and len(_rows(tmp_path / "pred_instances.csv")) == ids.max()


def test_unknown_thing_class_exits_2_and_writes_nothing(conv_checkpoint, phantom_root, tmp_path, capsys):
    """What scripts/predict.py runs (segsuite.core.cli.run), in this process."""
    images = phantom_root / "imagesTr" / "phantom_000_000?.nii.gz"
    out = tmp_path / "out"
    cfg = compose_config("predict", ["domain=mri_dixon", f"checkpoint={conv_checkpoint}", f"input={images}",
                                     f"output={out}", "device=cpu", "task=panoptic", "instancer.things=[tumour]"])
    with pytest.raises(SystemExit) as exit_:
        run(predict_entry, cfg)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "'tumour'" in err and "kidneys" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.rglob("*.nii*"))
