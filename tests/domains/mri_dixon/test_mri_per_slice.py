"""Per-slice measurements (``domains/mri_dixon/slices.py``): exact areas in cm² and mean FF on a volume with known
labels, the same table for a permuted + flipped copy, the CSVs of predict (``domain.writer.per_slice``) and evaluate
(``domain.evaluation.per_slice``), and a bad axis name as a one-line exit 2 with nothing written."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import apply_orientation, inv_ornt_aff

from segsuite.core.cli import run
from segsuite.core.evaluate import evaluate as evaluate_entry
from segsuite.core.predict import predict as predict_entry
from segsuite.domains.mri_dixon.fatfraction import fat_fraction_map
from segsuite.domains.mri_dixon.slices import array_axis, slice_measurements
from tests.helpers import compose_config

LABELS = {"muscle": 1, "fat": 2}
SPACING = (2.0, 2.5, 4.0)  # mm along the array axes i, j, k of the RAS+ volume


def _volume() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A RAS+ ``(6, 5, 4)`` label volume with known cross-sections, water and fat images, and its affine: muscle
    (FF 0.2) is a 2 x 3 block on axial slices 1 and 2 (plus one voxel of too little signal on slice 2), fat (FF 0.9)
    a 4 x 1 bar on axial slice 2."""
    labels = np.zeros((6, 5, 4), np.uint8)
    labels[1:3, 1:4, 1:3] = LABELS["muscle"]
    labels[0:4, 4, 2] = LABELS["fat"]
    ff = np.where(labels == LABELS["fat"], 0.9, 0.2).astype(np.float32)
    water, fat = 100 * (1 - ff), 100 * ff
    water[2, 3, 2], fat[2, 3, 2] = 0.0, 0.5  # FF 1, but below the case's signal threshold (5% of the 99th
    # percentile of W + F): left out of the mean
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = (-30.0, 12.5, 7.0)
    return labels, water, fat, affine


def _table(labels, water, fat, affine, axis="axial"):
    ff, valid = fat_fraction_map(water, fat)
    return slice_measurements("c", labels, affine, LABELS, axis, ff, valid)


def test_axial_areas_and_mean_fat_fraction_are_exact():
    labels, water, fat, affine = _volume()
    rows = _table(labels, water, fat, affine)
    assert len(rows) == 2 * 4 and [r["slice_index"] for r in rows] == [0, 1, 2, 3] * 2
    face_cm2 = SPACING[0] * SPACING[1] / 100  # i x j faces of axial slices
    by_key = {(r["label"], r["slice_index"]): r for r in rows}
    assert [by_key["muscle", k]["area_cm2"] for k in range(4)] == pytest.approx([0, 6 * face_cm2, 6 * face_cm2, 0])
    assert [by_key["fat", k]["area_cm2"] for k in range(4)] == pytest.approx([0, 0, 4 * face_cm2, 0])
    assert by_key["muscle", 1]["mean_ff"] == pytest.approx(0.2) and by_key["muscle", 2]["mean_ff"] == pytest.approx(0.2)
    assert by_key["fat", 2]["mean_ff"] == pytest.approx(0.9)
    assert np.isnan(by_key["muscle", 0]["mean_ff"]) and np.isnan(by_key["fat", 1]["mean_ff"])  # no voxels: empty
    # Slice centres: world z of voxel (2.5, 2, k).
    assert [by_key["fat", k]["position_mm"] for k in range(4)] == pytest.approx([7.0, 11.0, 15.0, 19.0])
    # Without water and fat: areas, no FF.
    assert all(np.isnan(r["mean_ff"]) for r in slice_measurements("c", labels, affine, LABELS, "axial"))


def test_sagittal_and_coronal_use_their_own_in_plane_faces():
    labels, water, fat, affine = _volume()
    sagittal = {(r["label"], r["slice_index"]): r for r in _table(labels, water, fat, affine, "sagittal")}
    assert sagittal["muscle", 1]["area_cm2"] == pytest.approx(6 * SPACING[1] * SPACING[2] / 100)  # 3 x 2 in j, k
    assert sagittal["fat", 3]["position_mm"] == pytest.approx(-30.0 + 3 * SPACING[0])
    coronal = {(r["label"], r["slice_index"]): r for r in _table(labels, water, fat, affine, "coronal")}
    assert coronal["fat", 4]["area_cm2"] == pytest.approx(4 * SPACING[0] * SPACING[2] / 100)


@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_a_permuted_flipped_copy_gives_the_same_table(affine_factory, axis):
    labels, water, fat, _ = _volume()
    affine = affine_factory(spacing=SPACING, angles=(7.0, 15.0))  # oblique: the nearest array axis is chosen
    # Array axes (k, i, j) with the new first and last reversed: the same voxels in the world.
    ornt = np.array([[1, 1], [2, -1], [0, -1]])  # array axis i -> 1, j -> 2 reversed, k -> 0 reversed
    moved = [apply_orientation(a, ornt) for a in (labels, water, fat)]
    twin_affine = affine @ inv_ornt_aff(ornt, labels.shape)
    assert moved[0].shape == (4, 6, 5)
    original, twin = _table(labels, water, fat, affine, axis), _table(*moved, twin_affine, axis)
    assert [(r["label"], r["slice_index"]) for r in twin] == [(r["label"], r["slice_index"]) for r in original]
    for key in ("position_mm", "area_cm2", "mean_ff"):
        np.testing.assert_allclose([r[key] for r in twin], [r[key] for r in original], rtol=1e-12, atol=1e-9)
    assert sum(r["area_cm2"] for r in original) > 0


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _number(cell: str) -> float:
    return float(cell) if cell else float("nan")


def _run(entry, name, overrides, capsys):
    """What ``scripts/<name>.py`` runs (``segsuite.core.cli.run``), in this process: exit code and stderr."""
    try:
        run(entry, compose_config(name, ["domain=mri_dixon", "device=cpu", *overrides]))
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def test_predict_writes_the_per_slice_csv_of_its_labels(conv_checkpoint, phantom_root, tmp_path, capsys):
    images = phantom_root / "imagesTr"
    out = tmp_path / "pred.nii.gz"
    overrides = [f"checkpoint={conv_checkpoint}", f"input={images}/phantom_000_000?.nii.gz", f"output={out}",
                 "domain.writer.per_slice=coronal"]
    code, err = _run(predict_entry, "predict", overrides, capsys)
    assert code == 0, err
    rows = _read(tmp_path / "pred_per_slice.csv")
    assert list(rows[0]) == ["case", "label", "slice_index", "position_mm", "area_cm2", "mean_ff"]
    written = nib.load(out)
    water, fat = (np.asanyarray(nib.load(images / f"phantom_000_000{i}.nii.gz").dataobj) for i in (0, 1))
    names = ["liver", "spleen", "kidneys", "muscle", "subcutaneous_fat", "visceral_fat"]
    expected = slice_measurements("phantom_000", np.asanyarray(written.dataobj), written.affine,
                                  {n: i + 1 for i, n in enumerate(names)}, "coronal", *fat_fraction_map(water, fat))
    assert len(rows) == len(expected) == len(names) * written.shape[array_axis(written.affine, "coronal")[0]]
    assert sum(float(r["area_cm2"]) for r in rows) > 0  # the random model predicts some foreground
    assert any(r["mean_ff"] for r in rows) and any(not r["mean_ff"] for r in rows)  # FF where a label has voxels
    for row, want in zip(rows, expected):
        assert (row["case"], row["label"], int(row["slice_index"])) == (want["case"], want["label"],
                                                                        want["slice_index"])
        for key in ("position_mm", "area_cm2", "mean_ff"):
            np.testing.assert_allclose(_number(row[key]), want[key], rtol=1e-6)


def test_evaluate_writes_predicted_and_true_areas_per_slice(conv_checkpoint, phantom_root, tmp_path, capsys):
    out = tmp_path / "eval"
    code, err = _run(evaluate_entry, "evaluate", [f"checkpoint={conv_checkpoint}", f"output_dir={out}",
                                                  f"domain.datamodule.datasets.root={phantom_root}",
                                                  "domain.evaluation.split=test", "domain.evaluation.overlays=false"],
                     capsys)
    assert code == 0, err
    rows = _read(out / "per_slice.csv")
    assert list(rows[0]) == ["case", "label", "slice_index", "position_mm", "pred_area_cm2", "true_area_cm2",
                             "pred_mean_ff", "true_mean_ff"]
    case = rows[0]["case"]
    truth = nib.load(phantom_root / "labelsTs" / f"{case}.nii.gz")
    water, fat = (np.asanyarray(nib.load(phantom_root / "imagesTs" / f"{case}_000{i}.nii.gz").dataobj) for i in (0, 1))
    labels = {r["label"]: r["value"] for r in _read(out / "per_case.csv")}
    expected = slice_measurements(case, np.asanyarray(truth.dataobj), truth.affine,
                                  {n: int(v) for n, v in labels.items()}, "axial", *fat_fraction_map(water, fat))
    assert len(rows) == len(expected) == len(labels) * truth.shape[array_axis(truth.affine, "axial")[0]]
    assert sum(float(r["true_area_cm2"]) for r in rows) > 0 and any(r["true_mean_ff"] for r in rows)
    for row, want in zip(rows, expected):
        assert (row["label"], int(row["slice_index"])) == (want["label"], want["slice_index"])
        np.testing.assert_allclose(float(row["true_area_cm2"]), want["area_cm2"], rtol=1e-6)
        np.testing.assert_allclose(_number(row["true_mean_ff"]), want["mean_ff"], rtol=1e-6)
    predicted = nib.load(out / "predictions" / f"{case}.nii.gz")
    pred = {(r["label"], r["slice_index"]): r["area_cm2"] for r in slice_measurements(
        case, np.asanyarray(predicted.dataobj), predicted.affine, {n: int(v) for n, v in labels.items()}, "axial")}
    np.testing.assert_allclose([float(r["pred_area_cm2"]) for r in rows],
                               [pred[r["label"], int(r["slice_index"])] for r in rows], rtol=1e-6)


@pytest.mark.parametrize("verb", ["predict", "evaluate"])
def test_a_bad_axis_name_exits_2_with_one_line_and_writes_nothing(conv_checkpoint, phantom_root, tmp_path, capsys,
                                                                   verb):
    out = tmp_path / "out"
    if verb == "predict":
        entry, key = predict_entry, "domain.writer.per_slice"
        overrides = [f"input={phantom_root}/imagesTr/phantom_000_000?.nii.gz", f"output={out}"]
    else:
        entry, key = evaluate_entry, "domain.evaluation.per_slice"
        overrides = [f"output_dir={out}", f"domain.datamodule.datasets.root={phantom_root}",
                     "domain.evaluation.split=test"]
    code, err = _run(entry, verb, [f"checkpoint={conv_checkpoint}", *overrides, f"{key}=transverse"], capsys)
    assert code == 2, err
    assert err.splitlines()[-1] == f"error: {key}='transverse': choose sagittal, coronal, axial or null (no " \
                                   "per-slice CSV)"
    assert "Traceback" not in err and not out.exists()


def test_off_by_default_in_predict_and_switched_off_in_evaluate(conv_checkpoint, phantom_root, tmp_path, capsys):
    images = f"input={phantom_root}/imagesTr/phantom_000_000?.nii.gz"
    code, err = _run(predict_entry, "predict", [f"checkpoint={conv_checkpoint}", images,
                                                f"output={tmp_path / 'p.nii.gz'}"], capsys)
    assert code == 0, err
    out = tmp_path / "eval"
    code, err = _run(evaluate_entry, "evaluate", [f"checkpoint={conv_checkpoint}", f"output_dir={out}",
                                                  f"domain.datamodule.datasets.root={phantom_root}",
                                                  "domain.evaluation.split=test", "domain.evaluation.overlays=false",
                                                  "domain.evaluation.per_slice=null"], capsys)
    assert code == 0, err
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["p.nii.gz"]
    assert (out / "per_case.csv").is_file() and not (out / "per_slice.csv").exists()
