"""Your own data in one command: band count and classes come from the data, not from the config."""

import json

import numpy as np
import pytest

from segsuite.core.checkpoint import describe
from segsuite.core.errors import ConfigError
from segsuite.core.train import train
from tests.helpers import compose_config

CLASSES = ["water", "forest", "crop", "grass", "building", "road", "bare"]
QUIET = ["trainer.max_epochs=1", "logger=none", "trainer.enable_model_summary=false",
         "trainer.enable_progress_bar=false"]


@pytest.fixture
def five_band_root(tif, tmp_path):
    """One 256 x 256 scene of 5 uint16 bands with labels of 7 classes and their classes.json."""
    root = tmp_path / "mine"
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(256)[None] // 37, 256, axis=0).astype(np.uint8)  # stripes of classes 0..6
    image = (rng.normal(1000, 100, (5, 256, 256)) + 300.0 * labels).astype(np.uint16)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    tif("mine/images/a.tif", image)
    tif("mine/labels/a.tif", labels)
    colors = rng.integers(0, 256, (len(CLASSES), 3)).tolist()
    (root / "classes.json").write_text(json.dumps([{"id": i, "name": n, "color": c}
                                                   for i, (n, c) in enumerate(zip(CLASSES, colors))]))
    return root


def test_channels_and_classes_come_from_the_data(five_band_root, tmp_path):
    cfg = compose_config("train", ["domain=landcover", f"domain.datamodule.datasets.root={five_band_root}",
                                   f"run_dir={tmp_path / 'run'}", *QUIET])
    assert cfg.domain.in_channels is None and cfg.domain.num_classes is None
    train(cfg)
    info = describe(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert info["model"]["in_channels"] == 5 and info["model"]["classes"] == 7 and info["num_classes"] == 7
    assert info["class_names"] == CLASSES and info["data_meta"]["band_names"] == [f"band_{b}" for b in range(1, 6)]
    # the plan: 4 x 4 blocks of 64 px, 3 held out, 64 px patches, batch 8; an epoch is one pass over the training area
    plan = info["data_meta"]["plan"]
    assert plan["holdout"] == {"mode": "blocks", "block": 64, "fraction": 0.2} and plan["patch_size"] == [64, 64]
    assert info["data_meta"]["in_channels"] == 5 and info["global_step"] == (13 * 64 * 64 // 64**2) // 8


def test_an_explicit_band_count_that_contradicts_the_data_is_refused(five_band_root, tmp_path):
    cfg = compose_config("train", ["domain=landcover", f"domain.datamodule.datasets.root={five_band_root}",
                                   f"run_dir={tmp_path / 'run'}", "domain.in_channels=3", *QUIET])
    with pytest.raises(ConfigError, match=r"domain.in_channels=3 but the data has in_channels=5"):
        train(cfg)
