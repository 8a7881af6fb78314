"""A short training on a synthetic scene through ``scripts/train.py domain=landcover`` learns the classes: its mIoU,
from training and from the tiled evaluation, is clearly above the majority-class baseline."""

import json
from pathlib import Path

import numpy as np
import pytest

from segsuite.core.evaluate import evaluate
from tests.domains.landcover.test_landcover_evaluate import label_counts
from tests.helpers import compose_config, run_script

pytestmark = pytest.mark.slow

DATA = {"synthetic_scenes": 1, "synthetic_size": 192, "patch_size": [32, 32], "holdout_block": 64,
        "holdout_fraction": 0.25, "holdout_mode": "blocks"}
OVERRIDES = [f"domain.datamodule.datasets.{k}={json.dumps(v)}" for k, v in DATA.items()]


@pytest.fixture(scope="module")
def landcover_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, data root) of 16 training steps of the default Unet/resnet18 on 32 px patches."""
    tmp = tmp_path_factory.mktemp("landcover_run")
    root, run = tmp / "data", tmp / "run"
    run_script("train", "domain=landcover", f"hydra.run.dir={run}", f"domain.datamodule.datasets.root={root}",
               *OVERRIDES, "domain.datamodule.datasets.samples_per_epoch=128", "trainer.max_epochs=1",
               "logger=none", "trainer.enable_model_summary=false", "trainer.enable_progress_bar=false")
    return run, root


def majority_baseline(counts: np.ndarray) -> float:
    """mIoU of predicting the most frequent class everywhere: its IoU is its share, every other class's is 0
    (classes absent from the reference and the prediction are left out of the mean, as in the metrics)."""
    return counts.max() / counts.sum() / (counts > 0).sum()


def test_short_training_beats_the_majority_baseline(landcover_run, tmp_path):
    run, root = landcover_run
    counts = label_counts(root, {k: v for k, v in DATA.items() if not k.startswith("synthetic")}, "val")
    baseline = majority_baseline(counts)
    trained = json.loads((run / "metrics.json").read_text())["test"]["test/miou"]  # the val split: no test scenes
    assert trained > baseline + 0.15 and trained > 3 * baseline, (trained, baseline)
    cfg = compose_config("evaluate", ["domain=landcover", f"checkpoint={run / 'checkpoints' / 'last.ckpt'}",
                                      f"output_dir={tmp_path}", f"domain.datamodule.datasets.root={root}", *OVERRIDES,
                                      "domain.inference.tile=[32,32]", "domain.inference.overlap=[8,8]"])
    tiled = evaluate(cfg)  # the same tiled inference as predict, at the training patch size
    assert np.array(tiled["confusion_matrix"]).sum(axis=1).tolist() == counts.tolist()
    assert tiled["miou"] > baseline + 0.15, (tiled["miou"], baseline)
