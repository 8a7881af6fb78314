"""Every config in conf/ composes and instantiates."""

from pathlib import Path

import hydra.utils
import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from segsuite.core.predict import inference_options
from segsuite.core.schedules import build_scheduler
from tests.helpers import compose_config

CONF = Path(__file__).parents[2] / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _train_cfg(compose_cfg, tmp_path, *overrides):
    return compose_cfg("train", [f"run_dir={tmp_path}", *overrides])


@pytest.mark.parametrize("name", options("model"))
def test_model_configs(compose_cfg, tmp_path, name):
    # train() fills domain.in_channels / num_classes from the data; here they are given
    cfg = _train_cfg(compose_cfg, tmp_path, f"model={name}", "domain.in_channels=3", "domain.num_classes=3")
    size = (40, 40)
    if cfg.model.get("spatial_dims") == 3:  # patch size and spacing come from the data's plan when training
        cfg = _train_cfg(compose_cfg, tmp_path, f"model={name}", "domain.in_channels=3", "domain.num_classes=3",
                         "model.patch_size=[16,16,8]", "model.spacing=[1,1,2]", "model.base_filters=4")
        size = (20, 18, 9)
    net = hydra.utils.instantiate(cfg.model)
    assert net(torch.zeros(2, cfg.domain.in_channels, *size)).shape == (2, cfg.domain.num_classes, *size)


@pytest.mark.parametrize("name", options("loss"))
def test_loss_configs(compose_cfg, tmp_path, name):
    loss = hydra.utils.instantiate(_train_cfg(compose_cfg, tmp_path, f"loss={name}").loss)
    assert torch.isfinite(loss(torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))))


@pytest.mark.parametrize("opt", options("optimizer"))
@pytest.mark.parametrize("sched", options("scheduler"))
def test_optimizer_and_scheduler_configs(compose_cfg, tmp_path, opt, sched):
    cfg = _train_cfg(compose_cfg, tmp_path, f"optimizer={opt}", f"scheduler={sched}")
    optimizer = hydra.utils.instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(2))])
    if cfg.scheduler:  # a length left null is the run's number of optimiser steps
        build_scheduler(hydra.utils.instantiate(cfg.scheduler), optimizer, total_steps=10).step()


@pytest.mark.parametrize("name", options("trainer"))
def test_trainer_configs(compose_cfg, tmp_path, name):
    # GPU configs are instantiated with the CPU accelerator here; everything else is as written.
    extra = [] if name == "cpu" else ["trainer.accelerator=cpu", "trainer.precision=32-true"]
    cfg = _train_cfg(compose_cfg, tmp_path, f"trainer={name}", *extra)
    assert isinstance(hydra.utils.instantiate(cfg.trainer, logger=False), L.Trainer)


@pytest.mark.parametrize("group", ["logger", "callbacks"])
def test_logger_and_callback_configs(compose_cfg, tmp_path, group):
    for name in options(group):
        cfg = _train_cfg(compose_cfg, tmp_path, f"{group}={name}")
        for node in (cfg[group] or {}).values():
            assert hydra.utils.instantiate(node) is not None


@pytest.mark.parametrize("name", options("domain"))
def test_domain_configs(compose_cfg, tmp_path, name):
    cfg = _train_cfg(compose_cfg, tmp_path, f"domain={name}")
    datamodule = hydra.utils.instantiate(cfg.domain.datamodule)
    assert isinstance(datamodule, L.LightningDataModule)
    assert inference_options(cfg.domain.inference, {"patch_size": [64, 64]}).batch_size >= 1  # a model's patch
    for node, method in (("reader", "open"), ("writer", "sink"), ("evaluation", "scorers")):
        assert callable(getattr(hydra.utils.instantiate(cfg.domain[node]), method))
    for key in ("name", "in_channels", "num_classes", "ignore_index"):
        assert key in cfg.domain


def test_augmentation_group_is_the_mri_domains_choice(compose_cfg, tmp_path):
    mri = _train_cfg(compose_cfg, tmp_path, "domain=mri_dixon")
    assert mri.augmentation._target_.endswith("Augmentation")
    assert mri.domain.datamodule.datasets.augmentation.rotate_prob == mri.augmentation.rotate_prob
    tuned = _train_cfg(compose_cfg, tmp_path, "domain=mri_dixon", "augmentation.rotate_prob=0.3")
    assert tuned.domain.datamodule.datasets.augmentation.rotate_prob == 0.3
    assert not _train_cfg(compose_cfg, tmp_path, "domain=mri_dixon", "augmentation=none").augmentation
    assert not _train_cfg(compose_cfg, tmp_path, "domain=toy").augmentation  # other domains: none
    for name in options("augmentation"):
        node = _train_cfg(compose_cfg, tmp_path, "domain=mri_dixon", f"augmentation={name}").augmentation
        assert not node or hydra.utils.instantiate(node) is not None


@pytest.mark.parametrize("name", ["predict", "evaluate"])
def test_predict_and_evaluate_configs(compose_cfg, tmp_path, name):
    extra = ["input=a", "output=b"] if name == "predict" else [f"output_dir={tmp_path}"]
    cfg = compose_cfg(name, [f"run_dir={tmp_path}", "checkpoint=x.ckpt", *extra])
    assert OmegaConf.select(cfg, "checkpoint") == "x.ckpt"


def test_predict_and_evaluate_take_the_domain_s_default_task():
    for command in ("predict", "evaluate"):
        assert compose_config(command, ["domain=microscopy"]).task == "instance"
        assert compose_config(command, ["domain=toy"]).task == "semantic"
        assert compose_config(command, ["domain=microscopy", "task=semantic"]).task == "semantic"
