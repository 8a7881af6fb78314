"""Phantom: known fat fractions recovered from the written files, Dixon relations, geometry, determinism."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from segsuite.core.errors import DataError
from segsuite.domains.mri_dixon.cases import list_cases, read_dataset_json
from segsuite.domains.mri_dixon.fatfraction import fat_fraction, mean_fat_fraction, valid_signal
from segsuite.domains.mri_dixon.io import read_volume
from segsuite.domains.mri_dixon.phantom import CHANNELS, LABELS, TRUTH_FILE, make_case, make_dataset


def test_fat_fraction_recovered_per_organ_from_files(phantom_root):
    truth = json.loads((phantom_root / TRUTH_FILE).read_text())
    spec = read_dataset_json(phantom_root)
    for case in list_cases(spec):
        water, fat = (read_volume(phantom_root / "imagesTr" / f"{case}_000{i}.nii.gz").array for i in (0, 1))
        label = read_volume(phantom_root / "labelsTr" / f"{case}.nii.gz").array
        for name, value in spec.labels.items():
            if name != "background":
                measured = mean_fat_fraction(water, fat, label == value)
                assert measured == pytest.approx(truth[case][name], abs=0.02), (case, name)
    livers = [truth[case]["liver"] for case in truth]
    assert len(set(livers)) == len(livers) and all(0.02 <= ff <= 0.30 for ff in livers)


def test_layout_and_geometry(phantom_root):
    spec = read_dataset_json(phantom_root)
    assert spec.channel_names == list(CHANNELS) and spec.labels == LABELS and spec.num_training == 5
    assert list_cases(spec) == [f"phantom_{i:03d}" for i in range(5)]
    assert list_cases(spec, "imagesTs", "labelsTs") == ["phantom_005"]
    img = nib.load(phantom_root / "imagesTr" / "phantom_000_0000.nii.gz")
    affine = img.affine
    np.testing.assert_allclose(np.sqrt((affine[:3, :3] ** 2).sum(0)), (3.0, 3.0, 6.0), rtol=1e-6)
    assert not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3])))  # oblique
    assert nib.aff2axcodes(affine) == ("L", "P", "S") and np.abs(affine[:3, 3]).max() > 1
    assert img.shape == (32, 32, 12) and img.get_data_dtype() == np.float32
    label = nib.load(phantom_root / "labelsTr" / "phantom_000.nii.gz")
    assert label.get_data_dtype() == np.uint8 and np.array_equal(label.affine, affine)
    assert set(np.unique(np.asanyarray(label.dataobj))) == set(LABELS.values())


def test_dixon_relations_without_noise():
    channels, label, _, true_ff = make_case(shape=(24, 24, 8), seed=3, noise=0.0, liver_ff=0.2)
    water, fat = channels["water"], channels["fat"]
    np.testing.assert_allclose(channels["in_phase"], water + fat, rtol=1e-6)
    np.testing.assert_allclose(channels["out_phase"], np.abs(water - fat), rtol=1e-5, atol=1e-5)
    ff = fat_fraction(water, fat)
    for name, value in LABELS.items():
        if name != "background" and (label == value).any():
            # The bias field scales water and fat alike, so the noise-free FF is exact in every voxel.
            np.testing.assert_allclose(ff[label == value], true_ff[name], atol=1e-5)
    assert true_ff["liver"] == 0.2
    assert (ff[~valid_signal(water, fat)] == 0).all() and np.isfinite(ff).all()


def test_deterministic_from_seed():
    first, second, other = (
        make_case((16, 16, 4), seed=9),
        make_case((16, 16, 4), seed=9),
        make_case((16, 16, 4), seed=10),
    )
    for name in CHANNELS:
        np.testing.assert_array_equal(first[0][name], second[0][name])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0]["water"], other[0]["water"])


def test_fat_fraction_guard():
    water = np.array([0.0, 1.0, 10.0, 80.0, -3.0])
    fat = np.array([0.0, 0.0, 90.0, 20.0, 50.0])
    ff = fat_fraction(water, fat, min_signal=5.0)
    np.testing.assert_allclose(ff, [0.0, 0.0, 0.9, 0.2, 1.0])  # negative water clipped to 0
    assert ff.dtype == np.float32
    assert np.isnan(mean_fat_fraction(water, fat, np.array([1, 1, 0, 0, 0], bool), min_signal=5.0))
    assert mean_fat_fraction(water, fat, np.array([1, 1, 1, 1, 0], bool), min_signal=5.0) == pytest.approx(0.55)


def test_make_dataset_refuses_to_overwrite(tmp_path):
    root = make_dataset(tmp_path / "d", n_cases=1, shape=(8, 8, 2))
    with pytest.raises(DataError, match="already holds a dataset.json"):
        make_dataset(root, n_cases=1, shape=(8, 8, 2))
    make_dataset(root, n_cases=1, shape=(8, 8, 2), seed=1, overwrite=True)
