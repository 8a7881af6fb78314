"""Two DDP processes on the CPU (gloo): metrics are reduced across ranks, not taken from rank 0 alone."""

import json

import hydra.utils
import pytest
import torch

from segsuite.core.checkpoint import load_task
from segsuite.core.metrics import SegmentationMetrics
from tests.helpers import FAST_TRAIN, compose_config, run_script


@pytest.mark.slow
def test_ddp_two_processes_reduces_metrics(tmp_path):
    overrides = [*FAST_TRAIN, "domain.datamodule.datasets.n_val=8", "domain.datamodule.batch_size=2"]
    run_script("train", f"hydra.run.dir={tmp_path}", *overrides, "trainer=ddp", "trainer.accelerator=cpu",
               "trainer.devices=2", "trainer.precision=32-true", "trainer.sync_batchnorm=false",
               "trainer.limit_train_batches=2", "logger=none",
               env={"OMP_NUM_THREADS": "1"})  # two processes on two cores: one thread each, no spin-waiting
    logged = json.loads((tmp_path / "metrics.json").read_text())["val"]

    # The same last checkpoint over the whole validation split in one process.
    cfg = compose_config("train", [f"run_dir={tmp_path}", *overrides])
    datamodule = hydra.utils.instantiate(cfg.domain.datamodule)
    datamodule.setup()
    task = load_task(tmp_path / "checkpoints" / "last.ckpt")
    full, halves = SegmentationMetrics(3, 255), [SegmentationMetrics(3, 255) for _ in range(2)]
    with torch.no_grad():
        for i, sample in enumerate(datamodule.splits["val"]):
            logits = task(sample["image"][None])
            full.update(logits, sample["mask"][None])
            halves[i % 2].update(logits, sample["mask"][None])  # what each rank saw (DistributedSampler)
    expected = float(full.compute()["miou"])
    assert logged["val/miou"] == pytest.approx(expected, abs=1e-5)
    assert all(abs(float(h.compute()["miou"]) - expected) > 1e-4 for h in halves)
