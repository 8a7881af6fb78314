"""A tiny 3D training (model=unet3d, ``segsuite.core.train.train`` on the composed config, in process: the entry point
is a thin wrapper of it): the plan in the run dir and in the checkpoint, the network laid out from it, 3D patches and
tiled validation."""

from __future__ import annotations

import json

import pytest
import torch

from segsuite.core.checkpoint import describe, load_task
from segsuite.core.errors import ConfigError
from segsuite.core.export import export_model
from segsuite.core.train import train
from tests.helpers import compose_config

TINY_3D = [
    "domain=mri_dixon", "model=unet3d", "model.base_filters=4", "trainer.max_epochs=1", "logger=none",
    "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "domain.in_channels=4",
    "domain.num_classes=7", "domain.datamodule.datasets.synthetic_cases=3",
    "domain.datamodule.datasets.synthetic_shape=[32,32,12]", "domain.datamodule.datasets.samples_per_epoch=4",
]


def test_unet3d_trains_one_epoch_and_keeps_the_plan(tmp_path):
    run = tmp_path / "run"
    train(compose_config("train", [f"run_dir={run}", f"domain.datamodule.datasets.root={tmp_path / 'phantom'}",
                                   *TINY_3D]))
    plan = json.loads((run / "plan.json").read_text())
    assert plan["spatial_dims"] == 3 and plan["num_classes"] == 7 and plan["in_channels"] == 4
    info = describe(run / "checkpoints" / "last.ckpt")
    meta = info["data_meta"]
    assert meta["plan"] == plan and meta["spatial_dims"] == 3
    assert meta["patch_size"] == plan["patch_size_3d"] == [32, 32, 12]
    assert meta["target_spacing"] == plan["target_spacing"] and meta["batch_size"] == plan["batch_size_3d"]
    # the network was laid out from the plan, and the checkpoint alone rebuilds it
    assert info["model"]["patch_size"] == meta["patch_size"] and info["model"]["spacing"] == meta["target_spacing"]
    task = load_task(run / "checkpoints" / "last.ckpt")
    with torch.no_grad():
        assert task(torch.zeros(1, 4, 30, 33, 11)).shape == (1, 7, 30, 33, 11)
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["val"]["val/mdice"] <= 1
    with pytest.raises(ConfigError, match="3D network"):  # one line before any work, nothing written
        export_model(run / "checkpoints" / "last.ckpt", "onnx", tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
