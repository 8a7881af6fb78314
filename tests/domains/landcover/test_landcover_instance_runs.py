"""Instance runs through the entry points on a synthetic scene: training with the U-Net border weighting gives a
model with a border channel whose checkpoint describes it; predict and evaluate with task=instance|panoptic write
their outputs; bad requests fail with a clear message, exit 2 and no partial output."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from segsuite.core.checkpoint import read_checkpoint
from tests.helpers import run_inline, run_script

pytestmark = pytest.mark.slow

DATA = {"synthetic_scenes": 2, "synthetic_size": 128, "patch_size": [32, 32], "holdout_block": 64,
        "holdout_fraction": 0.25, "samples_per_epoch": 16, "val_stems": ["scene_001"]}
OVERRIDES = [f"domain.datamodule.datasets.{k}={json.dumps(v)}" for k, v in DATA.items()]
QUIET = ["logger=none", "trainer.enable_model_summary=false", "trainer.enable_progress_bar=false",
         "trainer.max_epochs=1"]


@pytest.fixture(scope="module")
def border_run(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, data root) of one short epoch with instances=border."""
    tmp = tmp_path_factory.mktemp("border_run")
    root, run = tmp / "data", tmp / "run"
    run_script("train", "domain=landcover", "instances=border", f"hydra.run.dir={run}",
               f"domain.datamodule.datasets.root={root}", *OVERRIDES, *QUIET)
    return run / "checkpoints" / "last.ckpt", root


def test_border_training_adds_a_border_channel_and_describes_it(border_run):
    ckpt, _ = border_run
    hp = read_checkpoint(ckpt)["hyper_parameters"]
    assert hp["instances"]["border_channel"] and hp["instances"]["things"] == ["building"]
    assert hp["model"]["classes"] == hp["num_classes"] + 1 == 7
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    head = [v for k, v in state.items() if k.endswith("segmentation_head.0.weight")][0]
    assert head.shape[0] == 7


def test_predict_and_evaluate_with_instances(border_run, tmp_path):
    ckpt, root = border_run
    scene = root / "images" / "scene_000.tif"
    run_script("predict", "domain=landcover", f"checkpoint={ckpt}", f"input={scene}", f"output={tmp_path / 'p.tif'}",
               "task=panoptic", "domain.inference.tile=[64,64]", "domain.inference.overlap=[16,16]",
               f"hydra.run.dir={tmp_path / 'log'}")
    for name in ("p.tif", "p_instances.tif", "p_instances.gpkg", "p_instances.csv", "p_panoptic.tif"):
        assert (tmp_path / name).is_file(), name
    out = tmp_path / "eval"
    run_script("evaluate", "domain=landcover", f"checkpoint={ckpt}", f"domain.datamodule.datasets.root={root}",
               *OVERRIDES, "task=instance", f"output_dir={out}", "domain.inference.tile=[64,64]",
               "domain.inference.overlap=[16,16]", f"hydra.run.dir={tmp_path / 'log2'}")
    report = json.loads((out / "panoptic.json").read_text())
    building = [row for row in report["per_class"] if row["class"] == "building"][0]
    assert building["thing"] and building["true_count"] > 0
    assert (out / "panoptic_per_class.csv").is_file() and (out / "instance_counts.csv").is_file()


def test_bad_instance_requests_exit_2_without_output(border_run, tmp_path, capsys):
    """An unknown thing class through ``scripts/predict.py`` (the real CLI), an unknown task in this process through
    the same ``segsuite.core.cli.run`` (a subprocess costs 5-7 s of imports)."""
    ckpt, root = border_run
    scene = root / "images" / "scene_000.tif"
    base = ["domain=landcover", f"checkpoint={ckpt}", f"input={scene}", f"output={tmp_path / 'p.tif'}",
            f"hydra.run.dir={tmp_path / 'log'}"]
    proc = run_script("predict", *base, "task=instance", "instancer.things=[unicorn]", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error:") and "unicorn" in proc.stderr
    assert run_inline("predict", *base, "task=everything") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error:") and "task='everything'" in error, error
    assert not (tmp_path / "p.tif").exists() and not list(tmp_path.glob("p_*"))


def test_border_weighting_without_instance_labels_is_refused(border_run, tmp_path, capsys):
    """(in this process through ``segsuite.core.cli.run``, as ``scripts/train.py`` runs it)"""
    _, root = border_run
    plain = tmp_path / "plain"
    shutil.copytree(root, plain, ignore=shutil.ignore_patterns("instances"))
    code = run_inline("train", "domain=landcover", "instances=border", f"run_dir={tmp_path / 'run'}",
                      f"domain.datamodule.datasets.root={plain}", *OVERRIDES, *QUIET)
    err = capsys.readouterr().err
    assert code == 2 and "needs instance labels" in err.strip().splitlines()[-1], err[-2000:]
    assert not (tmp_path / "run" / "checkpoints").exists()
