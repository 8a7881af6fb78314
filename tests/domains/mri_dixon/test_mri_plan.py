"""The plan derived from the data: spacing rule, patch/batch budget, dataset.json values, builder options."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from segsuite.core import plan as planning
from segsuite.core.errors import ConfigError
from segsuite.core.models import topology
from segsuite.core.plan3d import BATCH_VOXELS
from segsuite.domains.mri_dixon.dataset import build_datasets
from segsuite.domains.mri_dixon.phantom import make_dataset
from segsuite.domains.mri_dixon.plan import CaseFingerprint, Plan, make_plan

from .conftest import PHANTOM_SHAPE, PHANTOM_SPACING


def _fingerprints(spacings, shapes) -> list[CaseFingerprint]:
    return [CaseFingerprint(list(s), list(n), {"water": np.arange(10.0)}, [5, 3]) for s, n in zip(spacings, shapes)]


def _plan(spacings, shapes, **kwargs) -> Plan:
    return make_plan(_fingerprints(spacings, shapes), ["water"], ["water"], ["background", "organ"], **kwargs)


def test_phantom_plan_from_dataset_json_and_spacings(phantom_root):
    meta = build_datasets(str(phantom_root), val_fraction=0.4, channels=["water", "fat"], add_fat_fraction=True,
                          context_slices=1)["train"].meta
    plan = Plan.from_dict(meta["plan"])
    assert plan.n_cases == 3 and plan.median_spacing == pytest.approx(PHANTOM_SPACING, abs=1e-4)
    assert plan.target_spacing == pytest.approx(PHANTOM_SPACING, abs=1e-4) and plan.anisotropic_axis is None
    assert plan.median_shape == list(PHANTOM_SHAPE)
    assert plan.num_classes == meta["num_classes"] == 7 and plan.class_names == meta["class_names"]
    assert plan.in_channels == meta["in_channels"] == 3 * 3 and plan.input_channels == ["water", "fat", "fat_fraction"]
    assert plan.patch_size_2d == meta["patch_size"] == [32, 32] and plan.batch_size_2d >= 2
    assert topology(plan.target_spacing, plan.patch_size_3d).patch_size == plan.patch_size_3d  # divisible
    assert plan.strides_3d == topology(plan.target_spacing, plan.patch_size_3d).strides
    assert set(plan.normalization) == {"water", "fat"}
    assert plan.normalization["fat"]["scheme"] == "per_case_percentile_zscore"
    assert sum(plan.label_voxels.values()) == 3 * math.prod(PHANTOM_SHAPE) and plan.label_voxels["liver"] > 0
    assert meta["target_spacing"] == plan.target_spacing and meta["batch_size"] == plan.batch_size_2d
    assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan  # JSON round trip
    assert "target spacing 3.00 x 3.00 x 6.00 mm" in plan.summary()


def test_patch_and_batch_fit_the_memory_budget():
    plan = _plan([(1.0, 1.0, 1.0)] * 10, [(300, 280, 260)] * 10)
    assert math.prod(plan.patch_size_3d) <= BATCH_VOXELS[3] / 2 and plan.batch_size_3d == 2
    assert all(p % 2 ** 4 == 0 for p in plan.patch_size_3d)  # at least 4 poolings on each axis
    assert math.prod(plan.patch_size_2d) <= BATCH_VOXELS[2] / 2 and all(p % 32 == 0 for p in plan.patch_size_2d)
    small = _plan([(1.0, 1.0, 1.0)] * 10, [(40, 40, 40)] * 10)
    assert small.patch_size_3d == [40, 40, 40] and small.patch_size_2d == [64, 64]  # the median (2D: up to 32s)
    assert small.batch_size_2d == round(10 * 40**3 * 0.05 / 64**2)  # at most 5 % of the data set per batch
    bigger = _plan([(1.0, 1.0, 1.0)] * 10, [(300, 280, 260)] * 10, memory_gb=32)
    assert math.prod(bigger.patch_size_3d) > math.prod(plan.patch_size_3d)


def test_the_run_length_is_the_core_budget_of_the_chosen_patch_and_batch():
    small, large = (_plan([(1.0, 1.0, 1.0)] * n, [(160, 160, 160)] * n) for n in (4, 40))
    for plan in (small, large):
        assert plan.budget == planning.budget(160**3 * len(plan.shapes), plan.patch_size_2d, plan.batch_size_2d)
        assert len(plan.class_weights) == plan.num_classes
    assert small.budget["max_steps"] < large.budget["max_steps"]
    assert Plan.from_dict(json.loads(json.dumps(small.to_dict()))) == small


def test_builder_resamples_to_the_target_and_user_values_win(phantom_root):
    datasets = build_datasets(str(phantom_root), val_fraction=0.4, target_spacing=[3.0, 3.0, 3.0], patch_size=[16, 24])
    meta = datasets["train"].meta
    assert meta["target_spacing"] == [3.0, 3.0, 3.0] and meta["patch_size"] == [16, 24]
    assert all(case.image.shape[1:] == (32, 32, 24) == case.label.shape for case in datasets["train"].cases)
    assert datasets["val"].cases[0].image.shape[1:] == (32, 32, 24)
    assert datasets["train"][0]["image"].shape == (4, 16, 24)
    kept = build_datasets(str(phantom_root), val_fraction=0.4, target_spacing=[3.0, 3.0, 3.0], resample=False)
    assert kept["train"].meta["target_spacing"] is None and kept["train"].cases[0].image.shape[1:] == PHANTOM_SHAPE


@pytest.mark.parametrize("options, message", [
    ({"patch_size": [16, 16, 16]}, "patch_size must be 2 positive ints for 2D"),
    ({"spatial_dims": 3, "context_slices": 1}, "context_slices must be >= 0 \\(and 0 for 3D"),
    ({"target_spacing": [1.0, 0.0, 1.0]}, "target_spacing must be three positive mm values"),
    ({"channels": ["T2"]}, "unknown channel 'T2'"),
    ({"memory_gb": 0}, "memory_gb must be > 0"),
])
def test_contradicting_options_are_config_errors(phantom_root, options, message):
    with pytest.raises(ConfigError, match=message):
        build_datasets(str(phantom_root), val_fraction=0.4, **options)


def test_ct_channels_use_the_training_sets_foreground_statistics(tmp_path):
    root = make_dataset(tmp_path / "ct", n_cases=3, shape=(16, 16, 6), spacing=(4.0, 4.0, 8.0), seed=2)
    content = json.loads((root / "dataset.json").read_text())
    content["channel_names"]["0"] = "CT"
    (root / "dataset.json").write_text(json.dumps(content))
    datasets = build_datasets(str(root), channels=["CT"], val_fraction=0.34, patch_size=[16, 16])
    stats = datasets["train"].meta["normalization"]["channels"]["CT"]
    assert stats["scheme"] == "ct" and stats["percentile_00_5"] < stats["mean"] < stats["percentile_99_5"]
    case = datasets["val"].cases[0]
    assert case.normalization["CT"]["mean"] == pytest.approx(stats["mean"])  # the same numbers for every case
