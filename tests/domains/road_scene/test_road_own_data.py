"""Your own road folder in one command: channels and classes come from the images and the class map."""

import json

import numpy as np

from segsuite.core.checkpoint import describe
from segsuite.core.train import train
from tests.helpers import compose_config

QUIET = ["trainer.max_epochs=1", "logger=none", "trainer.enable_model_summary=false",
         "trainer.enable_progress_bar=false"]


def test_a_folder_with_a_class_map_trains_with_only_its_root(tmp_path, write_png):
    root = tmp_path / "mine"
    classes = [{"id": 0, "name": "road", "color": [128, 64, 128]}, {"id": 3, "name": "car", "color": [0, 0, 142]},
               {"id": 7, "name": "person", "color": [220, 20, 60]}]
    root.mkdir()
    (root / "classes.json").write_text(json.dumps(classes))
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 2)):
        for i in range(count):
            mask = rng.choice([0, 3, 7], (96, 160)).astype(np.uint8)
            write_png(root / "images" / split / f"{i}.png", rng.integers(0, 256, (96, 160, 3), dtype=np.uint8))
            write_png(root / "masks" / split / f"{i}.png", mask)
    cfg = compose_config("train", ["domain=road_scene", "domain.datamodule.datasets.layout=folder",
                                   f"domain.datamodule.datasets.root={root}", f"run_dir={tmp_path / 'run'}",
                                   "domain.datamodule.batch_size=2", *QUIET])
    assert cfg.domain.in_channels is None and cfg.domain.num_classes is None
    train(cfg)
    info = describe(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert info["model"]["in_channels"] == 3 and info["model"]["classes"] == 3 and info["num_classes"] == 3
    assert info["class_names"] == ["road", "car", "person"]
