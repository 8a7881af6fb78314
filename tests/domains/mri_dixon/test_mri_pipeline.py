"""End to end with a tiny trained checkpoint (``trained_run``: ``scripts/train.py domain=mri_dixon``, a few
seconds): predict through ``scripts/predict.py`` keeps the input geometry exactly, evaluate writes its
reports and beats the all-background baseline, bad input through the script exits 2 with nothing written."""

from __future__ import annotations

import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from segsuite.core.cli import run
from segsuite.core.evaluate import evaluate as evaluate_entry
from segsuite.domains.mri_dixon.fatfraction import fat_fraction
from tests.helpers import compose_config, run_script

pytestmark = pytest.mark.slow  # the shared training run takes ~15-30 s on 2 CPU cores

# The validation case of the tiny run (3 cases, val_fraction 0.25, seed 0).
VAL_CASE = "phantom_002"


def _reoriented(img: nib.Nifti1Image, kind: str) -> nib.Nifti1Image:
    """The same image (same voxels in the world) stored with permuted/flipped array axes; codes kept."""
    data, affine = np.asanyarray(img.dataobj), img.affine.copy()
    if kind == "ras":  # the phantom is LPS-like: flipping the first two array axes makes it RAS-like
        n = np.array(data.shape[:2]) - 1
        data = data[::-1, ::-1]
        affine = affine @ np.array([[-1, 0, 0, n[0]], [0, -1, 0, n[1]], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    elif kind == "permuted":  # array axes (y, x, z)
        data = data.transpose(1, 0, 2)
        affine = affine[:, [1, 0, 2, 3]]
    out = nib.Nifti1Image(np.ascontiguousarray(data), affine, img.header)
    out.set_sform(affine, code=int(img.header["sform_code"]))
    out.set_qform(affine, code=int(img.header["qform_code"]))
    return out


def test_predict_round_trip_keeps_geometry_exactly(trained_run, tmp_path):
    root = trained_run["root"]
    images = tmp_path / "imagesTs"
    images.mkdir()
    for kind in ("oblique", "ras", "permuted"):  # one case each, as nnU-Net files in one folder
        for i in range(4):
            img = nib.load(root / "imagesTr" / f"{VAL_CASE}_{i:04d}.nii.gz")
            nib.save(_reoriented(img, kind), images / f"{kind}_{i:04d}.nii.gz")
    out = tmp_path / "pred"
    run_script("predict", "domain=mri_dixon", f"checkpoint={trained_run['checkpoint']}", f"input={images}",
               f"output={out}", f"hydra.run.dir={tmp_path / 'hydra'}", "domain.writer.fat_fraction=true")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{k}{s}.nii.gz" for k in ("oblique", "ras", "permuted") for s in ("", "_fatfraction"))
    labels = {}
    for kind in ("oblique", "ras", "permuted"):
        source, written = nib.load(images / f"{kind}_0000.nii.gz"), nib.load(out / f"{kind}.nii.gz")
        assert written.shape == source.shape and written.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(written.affine, source.affine)  # exactly, bit for bit
        np.testing.assert_array_equal(written.header.get_sform(), source.header.get_sform())
        np.testing.assert_array_equal(written.header.get_qform(), source.header.get_qform())
        for code in ("sform_code", "qform_code"):
            assert written.header[code] == source.header[code]
        labels[kind] = np.asanyarray(written.dataobj)
        ff = nib.load(out / f"{kind}_fatfraction.nii.gz")
        np.testing.assert_array_equal(ff.affine, source.affine)
        water, fat = (np.asanyarray(nib.load(images / f"{kind}_000{i}.nii.gz").dataobj) for i in (0, 1))
        np.testing.assert_array_equal(np.asanyarray(ff.dataobj), fat_fraction(water, fat))
    assert len(np.unique(labels["oblique"])) > 1  # not all background
    # Same voxels in the world -> same labels, whatever the storage order of the input.
    np.testing.assert_array_equal(labels["ras"], labels["oblique"][::-1, ::-1])
    np.testing.assert_array_equal(labels["permuted"], labels["oblique"].transpose(1, 0, 2))


def _evaluate(trained_run, output_dir, capsys, *extra):
    cfg = compose_config("evaluate", ["domain=mri_dixon", f"checkpoint={trained_run['checkpoint']}",
                                      f"output_dir={output_dir}", "device=cpu", *trained_run["data_overrides"],
                                      *extra])
    try:
        result = run(evaluate_entry, cfg)
        code = 0
    except SystemExit as exit_:
        result, code = None, exit_.code
    captured = capsys.readouterr()
    return code, result, captured.out, captured.err


def test_evaluate_writes_reports_and_beats_the_background_baseline(trained_run, tmp_path, capsys):
    out = tmp_path / "eval"
    code, result, stdout, _ = _evaluate(trained_run, out, capsys)
    assert code == 0
    for name in ("per_case.csv", "summary.csv", "metrics.json", "per_class.csv", "confusion.png"):
        assert (out / name).is_file()
    assert Image.open(out / "overlays" / f"{VAL_CASE}.png").size[0] > 100
    report = json.loads((out / "metrics.json").read_text())
    assert report["cases"] == [VAL_CASE] and report["split"] == "val"
    assert report["baseline_mean_dice"] == 0.0  # every phantom label is present in the case
    assert report["mean_dice"] > 0.2, report["labels"]  # a few seconds of training, clearly above the baseline
    assert "liver" in stdout and "mean Dice over labels" in stdout  # the printed summary table

    rows = list(csv.DictReader(open(out / "per_case.csv")))
    assert [r["label"] for r in rows] == ["liver", "spleen", "kidneys", "muscle", "subcutaneous_fat", "visceral_fat"]
    predicted = nib.load(out / "predictions" / f"{VAL_CASE}.nii.gz")
    reference = nib.load(trained_run["root"] / "labelsTr" / f"{VAL_CASE}.nii.gz")
    np.testing.assert_array_equal(predicted.affine, reference.affine)
    pred, ref = np.asanyarray(predicted.dataobj), np.asanyarray(reference.dataobj)
    voxel_ml = abs(np.linalg.det(reference.affine[:3, :3])) / 1000
    for row in rows:
        value = int(row["value"])
        p, r = pred == value, ref == value
        dice = 2 * (p & r).sum() / (p.sum() + r.sum()) if p.sum() + r.sum() else 1.0
        assert float(row["dice"]) == pytest.approx(dice)
        assert float(row["ref_volume_ml"]) == pytest.approx(r.sum() * voxel_ml)
        assert float(row["hd95_mm"]) >= 0 and float(row["assd_mm"]) >= 0

    # The same predict path: scripts/predict.py's code gives the same labels for this case.
    from segsuite.core.predict import predict as predict_entry
    cfg = compose_config("predict", ["domain=mri_dixon", f"checkpoint={trained_run['checkpoint']}", "device=cpu",
                                     f"input={trained_run['root'] / 'imagesTr' / (VAL_CASE + '_000?.nii.gz')}",
                                     f"output={tmp_path / 'p.nii.gz'}"])
    run(predict_entry, cfg)
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "p.nii.gz").dataobj), pred)


def test_evaluate_rejects_label_values_not_in_dataset_json(trained_run, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(trained_run["root"], root)
    label_file = root / "labelsTr" / f"{VAL_CASE}.nii.gz"
    img = nib.load(label_file)
    data = np.asanyarray(img.dataobj).copy()
    data[0, 0, 0] = 9
    nib.save(nib.Nifti1Image(data, img.affine, img.header), label_file)
    out = tmp_path / "eval"
    code, _, _, err = _evaluate({**trained_run, "data_overrides": [f"domain.datamodule.datasets.root={root}"]}, out,
                                capsys)
    assert code == 2 and "Traceback" not in err
    for text in (f"case '{VAL_CASE}'", str(label_file), "values [9]"):
        assert text in err, (text, err)
    assert not out.exists() or not any(out.rglob("*.*"))


def test_bad_input_through_the_script_exits_2(trained_run, tmp_path):
    folder = tmp_path / "case"
    folder.mkdir()
    for i in (0, 1, 3):  # the in-phase file (_0002) is missing
        shutil.copy(trained_run["root"] / "imagesTr" / f"{VAL_CASE}_{i:04d}.nii.gz", folder)
    out = tmp_path / "pred.nii.gz"
    proc = run_script("predict", "domain=mri_dixon", f"checkpoint={trained_run['checkpoint']}", f"input={folder}",
                      f"output={out}", f"hydra.run.dir={tmp_path / 'hydra'}", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and f"case '{VAL_CASE}'" in message
    assert str(folder / f"{VAL_CASE}_0002.nii.gz") in message
    assert not out.exists() and list(tmp_path.glob("*.part*")) == []
