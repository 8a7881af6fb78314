"""Whole-volume prediction: the slice engine equals the model, input forms, output names, DICOM input, clean-up, TTA
flips, and bad inputs through the predict entry point's own code path (exit 2, case and file named, nothing written).

These use an untrained 1x1-convolution checkpoint (fast); ``test_mri_pipeline.py`` uses a trained one.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from segsuite.core.checkpoint import load_task
from segsuite.core.cli import run
from segsuite.core.contracts import DataMeta, Item, Job, ModelInfo
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.inference import InferenceOptions, TilePredictor
from segsuite.core.pipeline import predict_item
from segsuite.core.predict import predict as predict_entry
from segsuite.domains.mri_dixon.cases import Case
from segsuite.domains.mri_dixon.inputs import check_tta_flips
from segsuite.domains.mri_dixon.io import Volume, to_canonical
from segsuite.domains.mri_dixon.patches import extract_slice
from segsuite.domains.mri_dixon.phantom import CHANNELS
from segsuite.domains.mri_dixon.reader import DixonReader, OpenedCase, SlicePlanes, SliceSource
from segsuite.domains.mri_dixon.writer import DixonWriter, cleanup_values, keep_largest_components
from tests.helpers import compose_config

META = {
    "channels": list(CHANNELS), "dataset_channels": list(CHANNELS), "add_fat_fraction": False, "axis": 2,
    "context_slices": 0, "size_divisor": 32, "labels": {"background": 0, "liver": 1, "kidneys": 2},
    "normalization": {"percentiles": [0.5, 99.5]},
}


def _job(meta: dict, predictor: TilePredictor | None = None, num_classes: int = 3, tile=None, overlap=(0, 0),
         batch_size: int = 16) -> Job:
    """A job of ``predictor`` (default: identity) on data with ``meta``, whole slices unless ``tile``."""
    names = ["background", *(f"class{i}" for i in range(1, num_classes))]
    data = DataMeta.from_dict({"in_channels": 4, "num_classes": num_classes, "class_names": names, **meta})
    predictor = predictor or TilePredictor(torch.nn.Identity(), device="cpu")
    return Job(ModelInfo(predictor, data, num_classes, False), options=InferenceOptions(tile, overlap, batch_size))


def _copy_case(phantom_root, case, folder, name=None):
    """The four channel files of a phantom case into ``folder`` (as ``name`` if given)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        shutil.copy(phantom_root / "imagesTr" / f"{case}_{i:04d}.nii.gz", folder / f"{name or case}_{i:04d}.nii.gz")
    return folder


def _run_predict(checkpoint, input, output, capsys, *extra):
    """``segsuite.core.cli.run(segsuite.core.predict.predict, cfg)``: what ``scripts/predict.py`` runs, in this
    process."""
    cfg = compose_config("predict", ["domain=mri_dixon", f"checkpoint={checkpoint}", f"input={input}",
                                     f"output={output}", "device=cpu", *extra])
    try:
        run(predict_entry, cfg)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def test_slice_engine_equals_model_on_every_slice(conv_checkpoint, phantom_root):
    task = load_task(conv_checkpoint)
    job = _job(task.hparams.data_meta, TilePredictor(task.net, device="cpu"), 7, batch_size=5)
    files = {n: phantom_root / "imagesTr" / f"phantom_000_{i:04d}.nii.gz" for i, n in enumerate(CHANNELS)}
    opened = DixonReader().open(Item("phantom_000", files), job)
    labels = next(predict_item(opened, job)).classes  # 12 slices: batches of 5, 5, 2; on the input's axes
    slices = torch.from_numpy(np.stack([extract_slice(opened.case.image, 2, i, 0) for i in range(12)]))  # (Z, C, X, Y)
    with torch.inference_mode():
        expected = task.net(slices).argmax(1).numpy()  # (Z, X, Y)
    np.testing.assert_array_equal(labels, opened.case.to_original(np.moveaxis(expected, 0, 2)))


@pytest.mark.parametrize("axis,context", [(0, 1), (2, 2)])
def test_tiled_slices_match_whole_slices(axis, context):
    """Windows with overlap inside slices larger than the tile give the whole-slice answer (pointwise model)."""
    torch.manual_seed(0)
    predictor = TilePredictor(torch.nn.Conv2d(4 * (2 * context + 1), 7, 1), device="cpu")
    meta = {**META, "axis": axis, "context_slices": context}
    image = np.random.default_rng(0).normal(size=(4, 34, 40, 6)).astype(np.float32)  # (C, X, Y, Z)
    case = Case("random", image, None, np.eye(4), Volume(image[0], np.eye(4)))

    def labels(tile, overlap):
        stack = SlicePlanes(image, axis, 32, tile)
        opened = OpenedCase([SliceSource(stack, i, context) for i in range(stack.shape[0])], {}, case, axis)
        return next(predict_item(opened, _job(meta, predictor, 7, tile, overlap, batch_size=8))).classes

    whole, tiled = labels(None, (0, 0)), labels((32, 32), (8, 8))
    assert whole.shape == image.shape[1:]
    assert (whole == tiled).mean() > 0.999  # identical up to float ties of the blended logits


def test_restore_brings_logits_back_to_the_input_axes(affine_factory):
    """Slices of the RAS+ volume, padded, back onto an oblique LPS-like grid: the inverse of the reader's slicing."""
    affine = affine_factory(flips=(-1, -1, 1))
    original = np.random.default_rng(1).normal(size=(2, 9, 7, 5)).astype(np.float32)  # (K, X, Y, Z)
    reference = Volume(original[0], affine)
    canonical = np.stack([to_canonical(Volume(k, affine)).array for k in original])  # (K, X', Y', Z') in RAS+
    case = Case("c", canonical[:1], None, np.eye(4), reference)
    for axis in (0, 1, 2):
        slices = torch.from_numpy(np.moveaxis(canonical, axis + 1, 1))  # (K, N, H, W)
        padded = torch.nn.functional.pad(slices, (0, 3, 0, 5))
        restored = OpenedCase([], {}, case, axis).restore(padded)
        np.testing.assert_array_equal(restored.numpy(), original)


def test_keep_largest_components():
    label = np.zeros((12, 12, 6), np.uint8)
    label[1:5, 1:5, 1:4] = 1  # 48 voxels
    label[8:10, 8:10, 1:3] = 1  # 8 voxels, separate
    label[6, 6, 4] = 1  # touches nothing
    label[1:4, 8:11, 2:5] = 2  # one component
    label[5, 5, 4] = 2  # diagonal neighbour of nothing of label 2: separate
    cleaned = keep_largest_components(label, [1])
    assert (cleaned == 1).sum() == 48 and (cleaned == 2).sum() == (label == 2).sum()
    cleaned = keep_largest_components(label, [1, 2])
    assert (cleaned == 2).sum() == 27 and cleaned[5, 5, 4] == 0
    chain = np.zeros((5, 5, 5), np.uint8)
    chain[0, 0, 0] = chain[1, 1, 1] = chain[2, 2, 2] = 3  # 26-connected diagonal chain: one component
    np.testing.assert_array_equal(keep_largest_components(chain, [3]), chain)


def test_cleanup_values():
    assert cleanup_values(True, META) == [1, 2] and cleanup_values(False, META) == []
    assert cleanup_values(["liver"], META) == [1]
    with pytest.raises(ConfigError, match="unknown labels \\['lung'\\]"):
        cleanup_values(["lung"], META)


@pytest.mark.parametrize("labels,axis,expected", [
    ({"background": 0, "kidneys": 1}, 2, [-1, -2]),
    ({"background": 0, "kidney_left": 1, "kidney_right": 2}, 2, [-1]),
    ({"background": 0, "Left Kidney": 1}, 1, [-1]),
    ({"background": 0, "kidney_left": 1}, 0, [-1, -2]),  # sagittal slices have no left-right axis
])
def test_tta_drops_left_right_flip_for_lateralised_labels(labels, axis, expected):
    predictor = TilePredictor(torch.nn.Identity(), device="cpu", tta_flips=[-1, -2])
    check_tta_flips(predictor, {**META, "labels": labels, "axis": axis})
    assert predictor.tta_flips == expected


def test_the_reader_decides_tta_flips_once_on_a_copy_of_the_callers_predictor():
    predictor = TilePredictor(torch.nn.Identity(), device="cpu", tta_flips=[-1, -2])
    job = _job({**META, "labels": {"background": 0, "kidney_left": 1, "kidney_right": 2}}, predictor)
    prepared = DixonReader().prepare(job)
    assert prepared.model.predictor.tta_flips == [-1] and prepared.model.predictor.model is predictor.model
    assert predictor.tta_flips == [-1, -2] and job.model.predictor is predictor  # the caller's job is unchanged
    assert DixonReader().prepare(prepared).model.predictor.tta_flips == [-1]  # the same decision again


def _touch(*paths):
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    return paths


def _find(input, meta=META, water_fat=False) -> list[Item]:
    return DixonReader(water_fat=water_fat).find(input, _job(meta))


def _outputs(item: Item, output: Path, folder: bool, **writer) -> dict[str, Path]:
    return DixonWriter(**writer).outputs(item, output, folder, _job(META))


def test_input_forms_and_output_names(tmp_path):
    images = tmp_path / "imagesTs"
    _touch(*(images / f"{c}_{i:04d}.nii.gz" for c in ("a", "b") for i in range(4)), images / "notes.txt")
    items = _find(str(images), water_fat=True)
    assert [i.name for i in items] == ["a", "b"] and [str(i.rel) for i in items] == ["a", "b"]  # outputs: a folder
    assert items[0].source == {n: images / f"a_{i:04d}.nii.gz" for i, n in enumerate(CHANNELS)}
    assert _outputs(items[1], tmp_path / "out", True, fat_fraction=True) == {
        "labels": tmp_path / "out" / "b.nii.gz", "fat_fraction": tmp_path / "out" / "b_fatfraction.nii.gz"}
    with pytest.raises(DataError, match="several cases; give an output folder, not the file name"):
        _outputs(items[0], tmp_path / "out.nii.gz", True)

    (single,) = _find(str(images / "a_000?.nii.gz"), water_fat=True)  # a glob
    assert single.rel == Path() and single.source == items[0].source
    assert _outputs(single, tmp_path / "pred.nii", False, fat_fraction=True) == {
        "labels": tmp_path / "pred.nii", "fat_fraction": tmp_path / "pred_fatfraction.nii"}
    assert _outputs(single, tmp_path / "preds", False) == {"labels": tmp_path / "preds" / "a.nii.gz"}
    listed = [str(images / f"b_{i:04d}.nii.gz") for i in (3, 1, 0, 2)]  # nnU-Net names: any order
    assert _find(listed)[0].source == items[1].source

    named = tmp_path / "case7"
    _touch(named / "water.nii.gz", named / "FAT.mha", named / "in_phase.nrrd", named / "out_phase" / "x.dcm")
    (item,) = _find(str(named))
    assert item.name == "case7" and item.source["fat"] == named / "FAT.mha"
    assert item.source["out_phase"] == named / "out_phase"  # a DICOM folder per channel

    plain = _touch(*(tmp_path / f"{n}.nii.gz" for n in ("w", "f", "ip", "op")))
    assert _find([str(p) for p in plain])[0].source == dict(zip(CHANNELS, plain))
    with pytest.raises(DataError, match="got 2 input files.*expected 4.*water, fat, in_phase, out_phase"):
        _find([str(p) for p in plain[:2]])
    mapping = {"fat": str(plain[1]), "water": str(plain[0]), "in_phase": str(plain[2]), "out_phase": str(plain[3])}
    assert _find(mapping)[0].source == dict(zip(CHANNELS, plain))


def test_input_maps_nnunet_indices_through_the_training_dataset_json(tmp_path):
    meta = {**META, "channels": ["fat", "water"]}  # trained on a subset, in another order
    _touch(*(tmp_path / f"c_{i:04d}.nii.gz" for i in range(4)))
    assert _find(str(tmp_path), meta)[0].source == {"fat": tmp_path / "c_0001.nii.gz", "water": tmp_path /
                                                    "c_0000.nii.gz"}
    ff_only = {**META, "channels": ["in_phase"]}  # an FF map needs water and fat too
    assert list(_find(str(tmp_path), ff_only, water_fat=True)[0].source) == ["in_phase", "water", "fat"]
    (tmp_path / "c_0001.nii.gz").unlink()
    with pytest.raises(DataError, match=r"case 'c': missing channel file\(s\) '.*c_0001\.nii\.gz' \(fat\)"):
        _find(str(tmp_path), meta)


def _dicom_case(phantom_root, tmp_path, dicom_writer, per_channel_folders):
    """The phantom case as int16 DICOM series (one folder, or one per channel) and the same data as NIfTI."""
    nifti = tmp_path / "nifti"
    nifti.mkdir()
    dicom = tmp_path / "dicom"
    for i, name in enumerate(CHANNELS):
        img = nib.load(phantom_root / "imagesTr" / f"phantom_001_{i:04d}.nii.gz")
        array = np.round(np.asanyarray(img.dataobj)).astype(np.int16)
        nib.save(nib.Nifti1Image(array, img.affine), nifti / f"phantom_001_{i:04d}.nii.gz")
        folder = dicom / name if per_channel_folders else dicom
        dicom_writer(folder, array, img.affine, uid=f"1.2.826.0.1.3680043.2.1125.{10 + i}", description=f"DIXON_{name}")
    return nifti, dicom


@pytest.mark.parametrize("per_channel_folders", [False, True])
def test_dicom_input_gives_nifti_with_equivalent_geometry(conv_checkpoint, phantom_root, tmp_path, dicom_writer,
                                                          capsys, per_channel_folders):
    nifti, dicom = _dicom_case(phantom_root, tmp_path, dicom_writer, per_channel_folders)
    series = "{" + ", ".join(f"{n}: DIXON_{n}" for n in CHANNELS) + "}"
    extra = [] if per_channel_folders else [f"domain.reader.series={series}"]
    assert _run_predict(conv_checkpoint, dicom, tmp_path / "from_dicom.nii.gz", capsys, *extra)[0] == 0
    assert _run_predict(conv_checkpoint, nifti, tmp_path / "from_nifti.nii.gz", capsys)[0] == 0
    from_dicom, from_nifti = (nib.load(tmp_path / f"from_{k}.nii.gz") for k in ("dicom", "nifti"))
    np.testing.assert_allclose(from_dicom.affine, from_nifti.affine, atol=1e-4)  # DICOM stores decimal strings
    assert from_dicom.header["sform_code"] > 0 and from_dicom.header["qform_code"] > 0
    np.testing.assert_array_equal(np.asanyarray(from_dicom.dataobj), np.asanyarray(from_nifti.dataobj))


def _bad_inputs(root, tmp, dicom_writer):
    """Builders of bad inputs: name -> (input path, text the error must contain)."""

    def missing_channel():
        folder = _copy_case(root, "phantom_000", tmp / "in")
        (folder / "phantom_000_0002.nii.gz").unlink()
        return folder, ["case 'phantom_000'", "phantom_000_0002.nii.gz", "in_phase"]

    def different_grids():
        folder = _copy_case(root, "phantom_000", tmp / "in")
        img = nib.load(folder / "phantom_000_0001.nii.gz")
        shifted = img.affine.copy()
        shifted[:3, 3] += 2.0
        nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), shifted, img.header), folder / "phantom_000_0001.nii.gz")
        return folder, ["case 'phantom_000'", "phantom_000_0000.nii.gz", "phantom_000_0001.nii.gz", "origin"]

    def four_d():
        folder = _copy_case(root, "phantom_000", tmp / "in")
        img = nib.load(folder / "phantom_000_0003.nii.gz")
        data = np.stack([np.asanyarray(img.dataobj)] * 2, axis=-1)
        nib.save(nib.Nifti1Image(data, img.affine), folder / "phantom_000_0003.nii.gz")
        return folder, ["case 'phantom_000'", "phantom_000_0003.nii.gz", "4D"]

    def corrupt():
        folder = _copy_case(root, "phantom_000", tmp / "in")
        path = folder / "phantom_000_0001.nii.gz"
        path.write_bytes(path.read_bytes()[:400])
        return folder, ["case 'phantom_000'", "phantom_000_0001.nii.gz", "cannot read NIfTI"]

    def nan_voxels():
        folder = _copy_case(root, "phantom_000", tmp / "in")
        img = nib.load(folder / "phantom_000_0000.nii.gz")
        data = np.asanyarray(img.dataobj).copy()
        data[3, 4, 5] = np.nan
        nib.save(nib.Nifti1Image(data, img.affine, img.header), folder / "phantom_000_0000.nii.gz")
        return folder, ["case 'phantom_000'", "phantom_000_0000.nii.gz", "NaN"]

    def no_dicom_series():
        folder = tmp / "dicom_empty"
        folder.mkdir()
        (folder / "readme.txt").write_text("not DICOM")
        return folder, ["case 'dicom_empty'", "dicom_empty", "no DICOM series"]

    def several_dicom_series():
        folder = tmp / "dicom_two"
        volume = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3)
        for uid in ("1.2.3.1", "1.2.3.2"):
            dicom_writer(folder, volume, np.diag([2.0, 2.0, 3.0, 1.0]), uid=uid, description=f"series {uid}")
        return folder, ["case 'dicom_two'", "dicom_two", "holds 2 series", "uid=1.2.3.1", "uid=1.2.3.2",
                        "domain.reader.series"]

    def second_case_corrupt():  # the first case is fine: still nothing may be written
        folder = _copy_case(root, "phantom_000", tmp / "in")
        _copy_case(root, "phantom_001", folder, name="zz")
        (folder / "zz_0002.nii.gz").write_bytes(gzip.compress(b"not a nifti header"))
        return folder, ["case 'zz'", "zz_0002.nii.gz"]

    return {f.__name__: f for f in (missing_channel, different_grids, four_d, corrupt, nan_voxels, no_dicom_series,
                                   several_dicom_series, second_case_corrupt)}


@pytest.mark.parametrize("bad", ["missing_channel", "different_grids", "four_d", "corrupt", "nan_voxels",
                                 "no_dicom_series", "several_dicom_series", "second_case_corrupt"])
def test_bad_input_exits_2_naming_case_and_file_and_writes_nothing(conv_checkpoint, phantom_root, tmp_path,
                                                                    dicom_writer, capsys, bad):
    input, expected = _bad_inputs(phantom_root, tmp_path, dicom_writer)[bad]()
    out = tmp_path / "out"
    code, err = _run_predict(conv_checkpoint, input, out, capsys, "domain.writer.fat_fraction=true")
    assert code == 2, err
    assert err.splitlines()[-1].startswith("error: ") and "Traceback" not in err  # after any progress bars
    for text in expected:
        assert text in err, (text, err)
    assert not out.exists() or not any(out.iterdir())  # no output, no temporary leftovers


def test_existing_output_is_kept_unless_overwrite(conv_checkpoint, phantom_root, tmp_path, capsys):
    folder = _copy_case(phantom_root, "phantom_000", tmp_path / "in")
    out = tmp_path / "pred.nii.gz"
    out.write_bytes(b"keep me")
    code, err = _run_predict(conv_checkpoint, folder, out, capsys)
    assert code == 2 and "already exists" in err and out.read_bytes() == b"keep me"
    assert _run_predict(conv_checkpoint, folder, out, capsys, "overwrite=true")[0] == 0
    assert nib.load(out).shape == (32, 32, 12)


def test_largest_component_is_applied_to_the_written_labels(conv_checkpoint, phantom_root, tmp_path, capsys):
    folder = _copy_case(phantom_root, "phantom_000", tmp_path / "in")
    assert _run_predict(conv_checkpoint, folder, tmp_path / "raw.nii.gz", capsys)[0] == 0
    assert _run_predict(conv_checkpoint, folder, tmp_path / "clean.nii.gz", capsys,
                        "domain.writer.largest_component=[liver,spleen]")[0] == 0
    raw, clean = (np.asanyarray(nib.load(tmp_path / f"{n}.nii.gz").dataobj) for n in ("raw", "clean"))
    np.testing.assert_array_equal(clean, keep_largest_components(raw, [1, 2]))
    code, err = _run_predict(conv_checkpoint, folder, tmp_path / "x.nii.gz", capsys,
                             "domain.writer.largest_component=[lung]")
    assert code == 2 and "unknown labels ['lung']" in err and not (tmp_path / "x.nii.gz").exists()
