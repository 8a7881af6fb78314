"""nnU-Net layout datasets: sample contract, meta, splits, normalisation, 2.5D, sampling, errors."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from segsuite.core.errors import ConfigError, DataError
from segsuite.domains.mri_dixon.cases import (
    DatasetSpec,
    list_cases,
    load_case,
    prepare_inference_case,
    read_case_volumes,
    read_dataset_json,
)
from segsuite.domains.mri_dixon.dataset import build_datasets
from segsuite.domains.mri_dixon.io import read_volume, write_label
from segsuite.domains.mri_dixon.patches import extract_slice


def _build(root, **kwargs):
    options = dict(patch_size=[24, 24], val_fraction=0.4, seed=0)
    return build_datasets(str(root), **{**options, **kwargs})


def test_sample_contract_and_meta(phantom_root):
    datasets = _build(phantom_root, context_slices=1, add_fat_fraction=True)
    assert set(datasets) == {"train", "val", "test"}
    meta = datasets["train"].meta
    json.dumps(meta)  # plain JSON-able
    assert meta["in_channels"] == (4 + 1) * 3 and meta["num_classes"] == 7
    assert meta["class_names"][:2] == ["background", "liver"] and meta["ignore_index"] == 255
    assert meta["patch_size"] == [24, 24] and meta["normalization"]["percentiles"] == [0.5, 99.5]
    assert all(ds.meta == meta for ds in datasets.values())
    sample = datasets["train"][0]
    assert set(sample) == {"image", "mask"}
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (15, 24, 24)
    assert sample["mask"].dtype == torch.int64 and sample["mask"].shape == (24, 24)
    batch = next(iter(DataLoader(datasets["val"], batch_size=5)))
    assert batch["image"].shape == (5, 15, 32, 32) and batch["mask"].shape == (5, 32, 32)
    assert len(datasets["val"]) == 2 * 12 and len(datasets["train"]) == 3 * 12


def test_split_is_by_case_and_seeded(phantom_root):
    first, again = _build(phantom_root), _build(phantom_root)
    train, val = first["train"].case_names, first["val"].case_names
    assert not set(train) & set(val) and len(train) + len(val) == 5
    assert (again["train"].case_names, again["val"].case_names) == (train, val)
    explicit = _build(phantom_root, val_cases=["phantom_004"])
    assert explicit["val"].case_names == ["phantom_004"] and "phantom_004" not in explicit["train"].case_names
    with pytest.raises(ConfigError, match="not in the data set"):
        _build(phantom_root, val_cases=["nope"])


def test_channel_subset_and_single_contrast(phantom_root):
    datasets = _build(phantom_root, channels=["fat"], axis=0, patch_size=[16, 8])
    assert datasets["train"].meta["in_channels"] == 1 and datasets["train"].meta["channels"] == ["fat"]
    assert datasets["train"][3]["image"].shape == (1, 16, 8)
    assert datasets["val"][0]["image"].shape == (1, 32, 32)  # (A, S) = (32, 12) padded to multiples of 32
    with pytest.raises(ConfigError, match="unknown channel 'T2'.*water"):
        _build(phantom_root, channels=["T2"])


def test_cases_are_canonical_and_normalised(phantom_root):
    spec = read_dataset_json(phantom_root)
    case = load_case(spec, "phantom_000", channels=[0, 1], add_fat_fraction=True)
    label_file = nib.load(phantom_root / "labelsTr" / "phantom_000.nii.gz")
    canonical = nib.as_closest_canonical(label_file)
    np.testing.assert_array_equal(case.label, np.asanyarray(canonical.dataobj))
    np.testing.assert_allclose(case.affine, canonical.affine, atol=1e-9)
    assert nib.aff2axcodes(label_file.affine) == ("L", "P", "S")  # the phantom is stored LPS-like
    for channel in case.image[:2]:
        assert abs(channel.mean()) < 1e-4 and abs(channel.std() - 1) < 1e-3
    water = np.asanyarray(
        nib.as_closest_canonical(nib.load(phantom_root / "imagesTr" / "phantom_000_0000.nii.gz")).dataobj
    )
    low, high = case.normalization["water"]["low"], case.normalization["water"]["high"]
    np.testing.assert_allclose([low, high], np.percentile(water, [0.5, 99.5]), rtol=1e-6)
    ff = case.image[2]
    assert ff.min() >= 0 and ff.max() <= 1 and np.isfinite(ff).all()


def test_prediction_written_back_on_input_grid(phantom_root, tmp_path):
    spec = read_dataset_json(phantom_root)
    case = load_case(spec, "phantom_001", channels=[0])
    path = write_label(tmp_path / "phantom_001.nii.gz", case.to_original(case.label), case.reference)
    written, original = nib.load(path), nib.load(phantom_root / "labelsTr" / "phantom_001.nii.gz")
    np.testing.assert_array_equal(written.affine, original.affine)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), np.asanyarray(original.dataobj))
    assert written.header["sform_code"] == original.header["sform_code"]
    assert written.header["qform_code"] == original.header["qform_code"]


def test_inference_case_matches_training_preparation(phantom_root):
    meta = _build(phantom_root, channels=["water", "in_phase"], add_fat_fraction=True, context_slices=1)["train"].meta
    files = {
        n: phantom_root / "imagesTr" / f"phantom_002_000{i}.nii.gz" for i, n in enumerate(["water", "fat", "in_phase"])
    }
    volumes = read_case_volumes(files, "phantom_002")
    inference = prepare_inference_case(volumes, meta, case="phantom_002")
    trained = load_case(read_dataset_json(phantom_root), "phantom_002", channels=[0, 2], add_fat_fraction=True)
    np.testing.assert_array_equal(inference.image, trained.image)
    slices = [extract_slice(inference.image, meta["axis"], i, meta["context_slices"]) for i in range(12)]
    assert np.stack(slices).shape == (12, meta["in_channels"], 32, 32)
    with pytest.raises(DataError, match="no file given for channels \\['fat'\\]"):
        prepare_inference_case({"water": volumes["water"], "in_phase": volumes["in_phase"]}, meta)


def test_context_slices_replicate_edges():
    image = np.arange(2 * 1 * 1 * 4, dtype=np.float32).reshape(2, 1, 1, 4)  # (C, X, Y, Z), value = 4c + z
    first = extract_slice(image, axis=2, index=0, context=1)[:, 0, 0]
    last = extract_slice(image, axis=2, index=3, context=2)[:, 0, 0]
    np.testing.assert_array_equal(first, [0, 0, 1, 4, 4, 5])  # channel-major, slices s-1..s+1
    np.testing.assert_array_equal(last, [1, 2, 3, 3, 3, 5, 6, 7, 7, 7])


def _sparse_dataset(root, affine_factory, nifti_writer, n_cases=3):
    """Single-contrast data set whose label is one 3x3x2 cube per case (sparse foreground)."""
    rng = np.random.default_rng(0)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    spec = {"channel_names": {"0": "T1"}, "labels": {"background": 0, "lesion": 1}, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps({**spec, "numTraining": n_cases}))
    affine = affine_factory()
    for i in range(n_cases):
        label = np.zeros((32, 32, 10), np.uint8)
        x, y = rng.integers(0, 29, 2)
        label[x : x + 3, y : y + 3, 4:6] = 1
        nifti_writer(root / "imagesTr" / f"c{i}_0000.nii.gz", rng.normal(size=label.shape).astype(np.float32), affine)
        nifti_writer(root / "labelsTr" / f"c{i}.nii.gz", label, affine)
    return root


def _has_foreground(sample):
    return bool(((sample["mask"] > 0) & (sample["mask"] != 255)).any())


def test_foreground_oversampling(tmp_path, affine_factory, nifti_writer):
    root = _sparse_dataset(tmp_path / "sparse", affine_factory, nifti_writer)
    torch.manual_seed(0)
    rates = {}
    for fraction in (0.0, 0.5, 1.0):
        datasets = _build(
            root, foreground_fraction=fraction, patch_size=[8, 8], samples_per_epoch=400, val_cases=["c2"]
        )
        rates[fraction] = np.mean([_has_foreground(sample) for sample in datasets["train"]])
    assert rates[1.0] == 1.0  # foreground samples are cropped around a foreground pixel
    assert rates[0.0] < 0.1  # 2 of 10 slices hold a 3x3 cube
    assert 0.4 < rates[0.5] < 0.65  # 0.5 forced + 0.5 * rates[0.0]


def test_padding_uses_ignore_index(phantom_root):
    datasets = _build(phantom_root, patch_size=[40, 36], ignore_index=99)
    mask = datasets["train"][0]["mask"]
    assert mask.shape == (40, 36) and (mask == 99).sum() == 40 * 36 - 32 * 32
    with pytest.raises(ConfigError, match="ignore_index 3 collides"):
        _build(phantom_root, ignore_index=3)


def test_ignore_label_from_dataset_json_maps_to_ignore_index(small_dataset):
    spec_path = small_dataset / "dataset.json"
    content = json.loads(spec_path.read_text())
    content["labels"]["ignore"] = 7
    spec_path.write_text(json.dumps(content))
    label_path = small_dataset / "labelsTr" / "phantom_000.nii.gz"
    img = nib.load(label_path)
    data = np.asanyarray(img.dataobj).copy()
    data[0, 0, :] = 7
    nib.save(nib.Nifti1Image(data, img.affine, img.header), label_path)
    case = load_case(read_dataset_json(small_dataset), "phantom_000", channels=[0], ignore_index=255)
    assert (case.label == 255).sum() == 6 and 7 not in case.label


def test_synthetic_if_missing(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        _build(tmp_path / "absent")
    datasets = _build(tmp_path / "absent", synthetic_if_missing=True, synthetic_cases=3, synthetic_shape=[16, 16, 4])
    assert len(datasets["train"].cases) + len(datasets["val"].cases) == 3
    assert (tmp_path / "absent" / "dataset.json").is_file()


def test_missing_channel_file(small_dataset):
    (small_dataset / "imagesTr" / "phantom_001_0002.nii.gz").unlink()
    with pytest.raises(
        DataError, match="case 'phantom_001': channel 2 \\(in_phase\\) file .*phantom_001_0002.nii.gz.* missing"
    ):
        _build(small_dataset, val_cases=["phantom_001"])


def test_bad_label_values(small_dataset):
    path = small_dataset / "labelsTr" / "phantom_002.nii.gz"
    img = nib.load(path)
    data = np.asanyarray(img.dataobj).copy()
    data[1, 1, 1], data[2, 2, 2] = 9, 12
    nib.save(nib.Nifti1Image(data, img.affine, img.header), path)
    with pytest.raises(
        DataError, match="case 'phantom_002'.*phantom_002.nii.gz.*values \\[9, 12\\] not in dataset.json"
    ):
        _build(small_dataset, val_cases=["phantom_002"])


def test_grid_mismatch_between_channel_and_label(small_dataset):
    path = small_dataset / "imagesTr" / "phantom_000_0001.nii.gz"
    volume = read_volume(path)
    shifted = volume.affine.copy()
    shifted[0, 3] += 2.0
    nib.save(nib.Nifti1Image(volume.array, shifted), path)
    with pytest.raises(DataError, match="case 'phantom_000'.*phantom_000_0001.nii.gz.*origin \\(.* vs \\("):
        _build(small_dataset, val_cases=["phantom_000"])


def test_nan_and_corrupt_files_in_a_case(small_dataset):
    path = small_dataset / "imagesTr" / "phantom_000_0000.nii.gz"
    volume = read_volume(path)
    volume.array[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(volume.array, volume.affine), path)
    with pytest.raises(DataError, match="case 'phantom_000'.*phantom_000_0000.nii.gz.*NaN"):
        _build(small_dataset, val_cases=["phantom_000"])
    raw = (small_dataset / "imagesTr" / "phantom_001_0000.nii.gz").read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataError, match="case 'phantom_000'.*phantom_000_0000.nii.gz.*cannot read"):
        _build(small_dataset, val_cases=["phantom_000"])


def test_dataset_json_errors(small_dataset):
    (small_dataset / "dataset.json").write_text(json.dumps({"channel_names": {"0": "water"}, "labels": {"bg": 1}}))
    with pytest.raises(DataError, match="0..N-1 with background 0"):
        read_dataset_json(small_dataset)
    (small_dataset / "dataset.json").unlink()
    with pytest.raises(DataError, match="dataset.json.*not found"):
        read_dataset_json(small_dataset)
    shutil.rmtree(small_dataset / "labelsTr")
    with pytest.raises(DataError, match="labelsTr.*not found"):
        list_cases(DatasetSpec(small_dataset, ["water"], {"background": 0}, None, ".nii.gz", 1))


def test_config_errors(small_dataset):
    with pytest.raises(ConfigError, match="axis"):
        _build(small_dataset, axis=3)
    with pytest.raises(ConfigError, match="patch_size"):
        _build(small_dataset, patch_size=[16])
    with pytest.raises(ConfigError, match="foreground_fraction"):
        _build(small_dataset, foreground_fraction=1.5)
    content = json.loads((small_dataset / "dataset.json").read_text())
    content["channel_names"] = {"0": "T1"}
    (small_dataset / "dataset.json").write_text(json.dumps(content))
    for extra in small_dataset.glob("images*/*_000[1-9].nii.gz"):  # one channel listed: one channel file per case
        extra.unlink()
    with pytest.raises(ConfigError, match="add_fat_fraction needs channels named 'water' and 'fat'.*T1"):
        _build(small_dataset, add_fat_fraction=True)
    assert _build(small_dataset)["train"].meta["channels"] == ["T1"]  # single contrast
