"""The core planner: hold-out, patch, batch and budget follow the data's sizes."""

import json

import pytest

from segsuite.core import plan as planning
from segsuite.core.errors import ConfigError
from segsuite.domains.landcover.dataset import build_datasets
from segsuite.domains.landcover.synthetic import make_dataset


def _fingerprint(side: int, scenes: int = 1) -> planning.Fingerprint:
    return planning.Fingerprint(sizes=[[side, side]] * scenes, class_names=["a", "b", "c"],
                                class_pixels=[900, 90, 10])


def test_rules_follow_the_scene_sizes():
    assert planning.holdout([[443, 489]]) == {"mode": "blocks", "block": 96, "fraction": 0.2}
    assert planning.holdout([[221, 244]] * 3)["block"] == 64  # the quadrants: 64 px blocks, not 128
    assert planning.holdout([[8000, 8000]] * 2)["fraction"] == 0.1  # plenty of pixels: a smaller share
    assert planning.patch_2d([[73, 244], [73, 61]]) == [64, 64]
    assert planning.patch_2d([[4000, 4000]]) == [512, 512]
    assert planning.patch_2d([[20, 20]]) == [32, 32]  # never below the networks' stride
    assert planning.batch_size([64, 64], 100_000) == planning.MIN_BATCH
    assert planning.batch_size([512, 512], 10**9, memory_gb=16) == 24  # nnU-Net's 12 x 512^2 at 8 GB, doubled
    with pytest.raises(ConfigError, match="memory_gb=0"):
        planning.batch_size([64, 64], 100_000, memory_gb=0)


def test_class_weights_favour_rare_classes_and_skip_absent_ones():
    weights = planning.class_weights([900, 90, 10, 0])
    assert weights[0] < weights[1] < weights[2] <= planning.MAX_WEIGHT and weights[3] == 0


def test_plan_of_two_scene_sizes_gives_two_budgets():
    small, large = (planning.make_plan(_fingerprint(side), [64, 64]) for side in (256, 1024))
    assert small["budget"]["max_steps"] < large["budget"]["max_steps"]
    for plan in (small, large):
        b = plan["budget"]
        assert b["max_steps"] % b["val_check_interval"] == 0
        assert b["max_steps"] // b["val_check_interval"] <= planning.ROUNDS or b["val_check_interval"] == 250
    json.dumps(small)  # plain values: plan.json and the checkpoint keep it


def test_landcover_plan_on_tiny_scenes_of_two_sizes(tmp_path):
    plans = {}
    for size in (64, 160):
        make_dataset(tmp_path / str(size), n_scenes=1, size=size, seed=0)
        ds = build_datasets(str(tmp_path / str(size)), patch_size=None, holdout_fraction=None, holdout_mode="blocks",
                            rare_class_weighting=None)
        plans[size] = meta = ds["train"].meta
        assert ds["train"].rare_class_weighting == meta["plan"]["rare_class_sampling"]  # the plan's advice
        assert meta["batch_size"] == meta["plan"]["batch_size"] and meta["patch_size"] == meta["plan"]["patch_size"]
        assert sum(meta["plan"]["fingerprint"]["class_pixels"]) > 0 and meta["plan"]["fingerprint"]["resolution"]
    small, large = plans[64]["plan"], plans[160]["plan"]
    assert small["budget"]["max_steps"] < large["budget"]["max_steps"]
    assert small["fingerprint"]["train_pixels"] < large["fingerprint"]["train_pixels"]
    assert small["holdout"]["block"] == 32 and large["holdout"]["block"] == 32
