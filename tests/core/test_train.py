"""The entry points end to end on the toy domain, as a user runs them."""

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch

from segsuite.core.checkpoint import describe, load_task
from segsuite.core.train import train
from segsuite.domains.toy.data import toy_sample
from tests.helpers import FAST_TRAIN, run_script


def test_training_leaves_checkpoints_and_metrics(toy_run):
    assert (toy_run / "checkpoints" / "last.ckpt").is_file()
    metrics = json.loads((toy_run / "metrics.json").read_text())
    assert set(metrics) >= {"val", "test", "best_checkpoint", "last_checkpoint"}
    assert 0 <= metrics["val"]["val/miou"] <= 1 and 0 <= metrics["test"]["test/miou"] <= 1
    assert (toy_run / "logs" / "csv" / "metrics.csv").is_file()


def test_checkpoint_describes_itself(toy_run):
    info = describe(toy_run / "checkpoints" / "last.ckpt")
    assert info["model"]["arch"] == "Unet" and info["model"]["in_channels"] == 3
    assert info["data_meta"]["class_names"] == ["background", "class1", "class2"]
    assert info["domain"] == "toy" and info["num_classes"] == 3
    # weights_only loading rebuilds the network with no config at all
    task = load_task(toy_run / "checkpoints" / "last.ckpt")
    assert task(torch.zeros(1, 3, 33, 47)).shape == (1, 3, 33, 47)


def test_resume_continues_the_same_run(tmp_path):
    run = tmp_path / "run"
    run_script("train", f"hydra.run.dir={run}", *FAST_TRAIN)
    assert describe(run / "checkpoints" / "last.ckpt")["epoch"] == 0
    run_script("train", f"hydra.run.dir={run}", *FAST_TRAIN, "trainer.max_epochs=2",
               f"ckpt_path={run}/checkpoints/last.ckpt")
    assert describe(run / "checkpoints" / "last.ckpt")["epoch"] == 1
    with open(run / "logs" / "csv" / "metrics.csv") as fh:
        epochs = {row["epoch"] for row in csv.DictReader(fh) if row.get("val/miou")}
    assert epochs == {"0", "1"}  # the first epoch's log rows are kept, the second is appended


def test_resume_with_another_architecture_is_refused(toy_run, tmp_path):
    proc = run_script("train", f"hydra.run.dir={tmp_path}", *FAST_TRAIN, "model=fcn",
                      f"ckpt_path={toy_run}/checkpoints/last.ckpt", check=False)
    assert proc.returncode == 2
    assert "different network" in proc.stderr and "fcn8s" in proc.stderr and "Traceback" not in proc.stderr


def test_predict_and_evaluate_from_checkpoint_alone(toy_run, tmp_path):
    image, _ = toy_sample(7, 150, 3, 3, 255)
    np.save(tmp_path / "in.npy", image)
    ckpt = toy_run / "checkpoints" / "last.ckpt"
    run_script("predict", f"checkpoint={ckpt}", f"input={tmp_path / 'in.npy'}", f"output={tmp_path / 'out.npy'}",
               f"hydra.run.dir={tmp_path / 'p'}")
    labels = np.load(tmp_path / "out.npy")
    assert labels.shape == (150, 150) and labels.dtype == np.uint8 and labels.max() < 3

    again = run_script("predict", f"checkpoint={ckpt}", f"input={tmp_path / 'in.npy'}",
                       f"output={tmp_path / 'out.npy'}", f"hydra.run.dir={tmp_path / 'p'}", check=False)
    assert again.returncode == 2 and "already exists" in again.stderr

    out = tmp_path / "eval"
    run_script("evaluate", f"checkpoint={ckpt}", f"hydra.run.dir={out}", *FAST_TRAIN[2:6])
    report = json.loads((out / "metrics.json").read_text())
    assert 0 <= report["miou"] <= 1 and len(report["per_class"]) == 3
    assert (out / "per_class.csv").is_file() and (out / "confusion.png").stat().st_size > 0


def test_bad_input_gives_one_clear_line(tmp_path, capsys):
    from segsuite.core.cli import run
    from tests.helpers import compose_config

    cases = {
        ("model.arch=unetto",): "unknown model architecture 'unetto'",
        ("model.encoder_name=resnet19",): "unknown encoder 'resnet19'",
        ("model.classes=5",): "model.classes=5 but the data has num_classes=3",
        ("ckpt_path=/nonexistent.ckpt",): "/nonexistent.ckpt does not exist",
    }
    for overrides, message in cases.items():  # in process, as the entry point runs it (the CLI: tests/core/test_cli)
        with pytest.raises(SystemExit) as exit:
            run(train, compose_config("train", [f"run_dir={tmp_path}", *FAST_TRAIN, *overrides]))
        err = capsys.readouterr().err
        assert exit.value.code == 2 and message in err.strip().splitlines()[-1] and "Traceback" not in err


def test_corrupt_checkpoint_is_named(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    proc = run_script("predict", f"checkpoint={bad}", "input=x.npy", f"output={tmp_path / 'o.npy'}",
                      f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 2 and f"cannot read checkpoint {bad}" in proc.stderr


def test_multirun_sweep(tmp_path):
    proc = run_script("train", "-m", f"hydra.sweep.dir={tmp_path}", *FAST_TRAIN, "model=unet,fcn",
                      "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1")
    assert proc.returncode == 0
    for job in ("0", "1"):
        assert (tmp_path / job / "metrics.json").is_file()
    shutil.rmtree(tmp_path)


def test_resume_with_more_epochs_extends_the_learning_rate_schedule(toy_run, tmp_path):
    # toy_run trained 2 epochs of a 2-epoch cosine; continue to 4: epochs 3-4 follow the 4-epoch cosine, not LR 0
    run_script("train", f"hydra.run.dir={tmp_path}", *FAST_TRAIN, "trainer.max_epochs=4",
               f"ckpt_path={toy_run}/checkpoints/last.ckpt")
    with open(tmp_path / "logs" / "csv" / "metrics.csv") as fh:
        rates = [float(row["lr-AdamW"]) for row in csv.DictReader(fh) if row.get("lr-AdamW")]
    expected = [1e-3 * (1 + math.cos(math.pi * epoch / 4)) / 2 for epoch in (2, 3)]  # 0-based epochs 2 and 3
    np.testing.assert_allclose(rates, expected, rtol=1e-5)
    assert describe(tmp_path / "checkpoints" / "last.ckpt")["epoch"] == 3


def test_checkpoint_keeps_the_thing_classes(compose_cfg, tmp_path):
    cfg = compose_cfg("train", [f"run_dir={tmp_path}", *FAST_TRAIN, "domain.things=[class2]", "logger=none",
                                "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
                                "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false"])
    train(cfg)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert describe(ckpt)["things"] == ["class2"]
    assert cfg.domain.in_channels == 3 and cfg.domain.num_classes == 3  # filled in from the data
    old = torch.load(ckpt, weights_only=True)  # a checkpoint from before things were stored still loads
    del old["hyper_parameters"]["things"]
    torch.save(old, tmp_path / "old.ckpt")
    assert tuple(load_task(tmp_path / "old.ckpt").hparams.things) == ()


def test_early_stopping_ends_a_run_on_a_constant_target(compose_cfg, tmp_path):
    # the target is all class 0: once the network predicts it, val/miou stays 1.0 and 2 rounds without a better one
    # end the run long before its 400 steps; metrics.json names the best score and where it came from
    cfg = compose_cfg("train", [f"run_dir={tmp_path}", *FAST_TRAIN[1:2], "logger=none", "optimizer.lr=1e-2",
                                "domain.datamodule.datasets._target_=tests.helpers.constant_datasets",
                                "~domain.datamodule.datasets.n_train", "~domain.datamodule.datasets.n_val",
                                "~domain.datamodule.datasets.n_test", "~domain.datamodule.datasets.size",
                                "~domain.datamodule.datasets.in_channels", "~domain.datamodule.datasets.num_classes",
                                "~domain.datamodule.datasets.ignore_index", "domain.datamodule.batch_size=4",
                                "trainer.max_steps=400", "trainer.val_check_interval=2",
                                "trainer.check_val_every_n_epoch=null", "callbacks.early_stopping.patience=2",
                                "trainer.enable_progress_bar=false"])
    metrics = train(cfg)
    assert metrics["stopped_early"] and metrics["steps"] < 400
    best = metrics["best"]
    assert best["score"] == 1.0 and best["monitor"] == "val/miou" and best["step"] == metrics["steps"] - 4
    assert metrics["best_checkpoint"].endswith(f"step{best['step']:06d}.ckpt")
    assert json.loads((tmp_path / "metrics.json").read_text())["best"]["step"] == best["step"]


def test_the_plan_sets_the_run_length_unless_the_user_does(compose_cfg):
    from segsuite.core.train import apply_budget

    plan = {"budget": {"max_steps": 300, "val_check_interval": 30, "patience": 4}}
    cfg = compose_cfg("train", ["run_dir=unused"])
    assert apply_budget(cfg, {"plan": plan})["source"] == "plan"
    assert (cfg.trainer.max_steps, cfg.trainer.max_epochs, cfg.trainer.val_check_interval) == (300, -1, 30)
    assert cfg.trainer.check_val_every_n_epoch is None and cfg.callbacks.early_stopping.patience == 4
    for override, expected in (("trainer.max_epochs=3", (-1, 3)), ("trainer.max_steps=50", (50, -1))):
        cfg = compose_cfg("train", ["run_dir=unused", override])
        assert apply_budget(cfg, {"plan": plan})["source"] == "trainer"
        assert (cfg.trainer.max_steps, cfg.trainer.max_epochs) == expected and cfg.trainer.val_check_interval is None
    cfg = compose_cfg("train", ["run_dir=unused"])
    assert apply_budget(cfg, {})["source"] == "default" and cfg.trainer.max_epochs == 10  # data without a plan


def test_loss_class_weights_can_come_from_the_plan():
    from segsuite.core.errors import ConfigError
    from segsuite.core.train import plan_class_weights

    loss = {"_target_": "x", "losses": {"ce": {"class_weights": "plan"}, "dice": {}}}
    filled = plan_class_weights(loss, {"plan": {"class_weights": [0.5, 2.0]}})
    assert filled["losses"]["ce"]["class_weights"] == [0.5, 2.0] and filled["losses"]["dice"] == {}
    with pytest.raises(ConfigError, match="class_weights=plan, but this data has no plan"):
        plan_class_weights({"class_weights": "plan"}, {})
