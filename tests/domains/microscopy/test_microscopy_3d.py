"""A 3D network on stacks (model=unet3d): synthetic stacks, a few training steps of a tiny 3D U-Net on 3D patches with
the border channel, then predict (whole stacks through the engine's 3D windows): a uint16 mask of the stack's shape,
its overlay and per-object CSV; a 2D checkpoint still predicts the stack slice by slice."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile
import torch

from segsuite.core.api import Segmenter
from segsuite.core.checkpoint import describe
from segsuite.core.errors import DataError
from segsuite.core.train import train
from segsuite.domains.microscopy.data import build_datasets, make_dataset, synthetic_image
from tests.helpers import compose_config, run_inline

TINY_3D = ["domain=microscopy", "model=unet3d", "model.base_filters=4", "model.max_filters=16", "logger=none",
           "trainer.max_steps=3", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
           "trainer.enable_model_summary=false", "domain.datamodule.datasets.patch_size=[8,32,32]",
           "domain.datamodule.datasets.batch_size=2", "domain.datamodule.datasets.samples_per_epoch=6"]


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory):
    return make_dataset(tmp_path_factory.mktemp("stacks") / "data", n_images=4, size=64, seed=2, depth=16)


def test_synthetic_stacks_hold_3d_nuclei_and_2d_frames_are_unchanged(stacks):
    image, labels = tifffile.imread(stacks / "01" / "t000.tif"), tifffile.imread(stacks / "01_GT/SEG/man_seg000.tif")
    assert image.shape == labels.shape == (16, 64, 64) and image.dtype == labels.dtype == np.uint16
    depths = [len(np.unique(np.nonzero(labels == i)[0])) for i in range(1, labels.max() + 1)]
    assert labels.max() >= 5 and 1 < np.median(depths) < 16  # objects span several slices, not the whole stack
    assert synthetic_image(3, 64)[1].shape == (64, 64)


def test_3d_patches_are_balanced_on_nuclei_and_carry_instances(stacks):
    data = build_datasets(str(stacks), patch_size=[8, 32, 32], spatial_dims=3, samples_per_epoch=40, seed=0)
    train_set, val = data["train"], data["val"]
    assert train_set.meta["spatial_dims"] == 3 and train_set.meta["model_defaults"]["patch_size"] == [8, 32, 32]
    torch.manual_seed(0)
    samples = [train_set[i] for i in range(40)]
    assert samples[0]["image"].shape == (1, 8, 32, 32) and samples[0]["mask"].shape == (8, 32, 32)
    for s in samples:  # the instance ids were cropped with the mask
        assert torch.equal(s["instances"] > 0, s["mask"] == 1)
    assert sum(bool((s["mask"] == 1).any()) for s in samples) >= 30
    assert torch.equal(val[3]["image"], val[3]["image"]) and torch.equal(val[1]["mask"], val[1]["mask"])
    with pytest.raises(DataError, match="some images are 2D"):
        build_datasets(str(make_dataset(stacks.parent / "flat", 2, 32, 0)), spatial_dims=3)


def test_unet3d_trains_on_stacks_and_predicts_them_whole(stacks, tmp_path, checkpoint):
    run = tmp_path / "run"
    train(compose_config("train", [f"run_dir={run}", f"domain.datamodule.datasets.root={stacks}", *TINY_3D]))
    ckpt = run / "checkpoints" / "last.ckpt"
    info = describe(ckpt)
    assert info["data_meta"]["spatial_dims"] == 3 and info["model"]["patch_size"] == [8, 32, 32]
    assert info["model"]["classes"] == 3  # nucleus, background and the border channel
    source = stacks / "01" / "t001.tif"
    assert run_inline("predict", "domain=microscopy", f"checkpoint={ckpt}", f"input={source}",
                      f"output={tmp_path / 'out'}/", "task=instance", "device=cpu") == 0
    mask = tifffile.imread(tmp_path / "out" / "mask001.tif")
    assert mask.shape == (16, 64, 64) and mask.dtype == np.uint16
    assert (tmp_path / "out" / "mask001_overlay.png").is_file()
    with open(tmp_path / "out" / "mask001_objects.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["id"]) for r in rows] == list(range(1, mask.max() + 1))
    assert all(int(r["voxels"]) == (mask == int(r["id"])).sum() for r in rows)  # voxels
    assert run_inline("evaluate", "domain=microscopy", f"checkpoint={ckpt}", f"output_dir={tmp_path / 'eval'}",
                      f"domain.datamodule.datasets.root={stacks}", f"run_dir={tmp_path / 'he'}", "task=instance",
                      "device=cpu") == 0
    ctc = json.loads((tmp_path / "eval" / "ctc.json").read_text())
    assert 0 <= ctc["seg"] <= 1 and 0 <= ctc["det"] <= 1  # scored against the 3D nuclei of the truth stacks
    truth = [tifffile.imread(f) for f in sorted(stacks.glob("01_*/SEG/*.tif"))]
    assert ctc["counts"]["references"] == sum(len(np.unique(t)) - 1 for t in truth)
    segmenter = Segmenter.from_checkpoint(ckpt, device="cpu")  # a 2D image through the 3D network stays 2D
    assert segmenter.predict(tifffile.imread(source)[5], mode="instance").instances.shape == (64, 64)
    # a 2D checkpoint still predicts the stack slice by slice into the same layout
    assert run_inline("predict", "domain=microscopy", f"checkpoint={checkpoint}", f"input={source}",
                      f"output={tmp_path / 'out2d.tif'}", "task=instance", "device=cpu") == 0
    assert tifffile.imread(tmp_path / "out2d.tif").shape == (16, 64, 64)
