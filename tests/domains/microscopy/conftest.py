"""Shared fixtures: a small synthetic CTC root and an untrained checkpoint with a border channel (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segsuite.core.task import SegmentationTask
from segsuite.domains.microscopy.data import build_datasets, make_dataset


@pytest.fixture(scope="session")
def ctc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six synthetic 64 px frames in the CTC layout (gold truth on even frames, silver on odd ones)."""
    return make_dataset(tmp_path_factory.mktemp("microscopy") / "data", n_images=6, size=64, seed=1)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, ctc_root: Path) -> Path:
    """A small random U-Net for the synthetic data, with the border channel the domain trains."""
    meta = build_datasets(str(ctc_root), patch_size=32)["train"].meta
    model = {"_target_": "segsuite.core.models.create_model", "arch": "unet", "encoder_name": "resnet18",
             "encoder_depth": 3, "decoder_channels": [16, 8, 8], "in_channels": 1, "classes": 3}
    torch.manual_seed(0)
    task = SegmentationTask(model=model, num_classes=2, class_names=meta["class_names"], data_meta=meta,
                            domain="microscopy", instances={"things": ["nucleus"], "border_channel": True},
                            things=["nucleus"])
    path = tmp_path_factory.mktemp("ckpt") / "micro.ckpt"
    torch.save({"hyper_parameters": dict(task.hparams), "state_dict": task.state_dict()}, path)
    return path
