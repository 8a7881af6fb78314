"""``train(cfg)``: fit, then test; leaves checkpoints/ and metrics.json in the run directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra.utils
import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from segsuite.core.checkpoint import read_checkpoint
from segsuite.core.data import SegDataModule
from segsuite.core.errors import ConfigError
from segsuite.core.instances import InstanceTargets
from segsuite.core.io import write_json
from segsuite.core.task import SegmentationTask

log = logging.getLogger(__name__)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def fill_from_data(cfg: DictConfig, meta: dict[str, Any]) -> None:
    """``domain.in_channels`` / ``domain.num_classes`` left null are taken from the data (so ``model.in_channels`` and
    ``model.classes``, which refer to them, follow); explicit values must agree with the data."""
    with open_dict(cfg.domain):
        for key in ("in_channels", "num_classes"):
            given = cfg.domain.get(key)
            if given is None:
                cfg.domain[key] = int(meta[key])
            elif int(given) != int(meta[key]):
                raise ConfigError(f"domain.{key}={given} but the data has {key}={meta[key]}; "
                                  f"set domain.{key}={meta[key]} or leave it null to take it from the data")


def check_model_fits_data(model_cfg: DictConfig, meta: dict[str, Any]) -> None:
    """The network's channels and classes must match what the data delivers."""
    for key, data_key in (("in_channels", "in_channels"), ("classes", "num_classes")):
        if key in model_cfg and int(model_cfg[key]) != int(meta[data_key]):
            raise ConfigError(
                f"model.{key}={model_cfg[key]} but the data has {data_key}={meta[data_key]}; "
                f"set domain.{data_key}={meta[data_key]} (or choose other data)"
            )


def check_resume(ckpt_path: str, model_cfg: dict[str, Any]) -> None:
    """Resuming needs the same network: compare the checkpoint's description with the config."""
    described = read_checkpoint(ckpt_path)["hyper_parameters"]["model"]
    keys = ("_target_", "arch", "encoder_name", "in_channels", "classes")
    diff = {k: (described.get(k), model_cfg.get(k)) for k in keys if described.get(k) != model_cfg.get(k)}
    if diff:
        parts = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in diff.items())
        raise ConfigError(f"checkpoint {ckpt_path} was trained with a different network ({parts})")


def build_instance_targets(cfg: DictConfig) -> InstanceTargets | None:
    """The border-weighting transform of ``cfg.instances``, or None for plain semantic training."""
    node = cfg.get("instances")
    return hydra.utils.instantiate(node) if node and node.get("_target_") else None


def model_config(cfg: DictConfig, targets: InstanceTargets | None, meta: dict | None = None) -> dict[str, Any]:
    """The network's config; with a border channel it has one output more than the classes. Options left null
    take the data's proposal in ``meta["model_defaults"]`` (e.g. a 3D U-Net's patch size and spacing)."""
    model = _plain(cfg.model)
    for key, value in ((meta or {}).get("model_defaults") or {}).items():
        if key in model and model[key] is None:
            model[key] = value
    if targets is not None and targets.border_channel and "classes" in model:
        model["classes"] = int(model["classes"]) + 1
    return model


def build_task(cfg: DictConfig, meta: dict[str, Any], targets: InstanceTargets | None = None) -> SegmentationTask:
    scheduler = cfg.get("scheduler")
    return SegmentationTask(
        model=model_config(cfg, targets, meta),
        num_classes=meta["num_classes"],
        ignore_index=meta["ignore_index"],
        class_names=meta["class_names"],
        data_meta=meta,
        domain=cfg.domain.name,
        loss=hydra.utils.instantiate(cfg.loss),
        optimizer=hydra.utils.instantiate(cfg.optimizer),
        scheduler=hydra.utils.instantiate(scheduler) if scheduler else None,
        instances=targets.describe() if targets is not None else None,
        things=list(_plain(cfg.domain.get("things")) or []),
    )


def check_epochs(trainer: DictConfig) -> None:
    """``trainer.max_epochs``: a whole number >= 1, or -1 (until stopped); null leaves it to ``max_steps``."""
    epochs = trainer.get("max_epochs")
    whole = isinstance(epochs, int) and not isinstance(epochs, bool)
    if epochs is not None and (not whole or (epochs < 1 and epochs != -1)):
        raise ConfigError(f"trainer.max_epochs={epochs!r}: expected a whole number >= 1 (or -1: until stopped)")


def build_trainer(cfg: DictConfig) -> L.Trainer:
    check_epochs(cfg.trainer)
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    if not loggers:
        callbacks = [c for c in callbacks if type(c).__name__ != "LearningRateMonitor"]
    return hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                   default_root_dir=cfg.run_dir)


def _scalars(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if k.startswith(prefix)}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the configured model on the configured domain, then test the best checkpoint.

    Returns the metrics also written to ``{run_dir}/metrics.json``.
    """
    L.seed_everything(cfg.seed, workers=True)
    targets = build_instance_targets(cfg)
    datamodule: SegDataModule = hydra.utils.instantiate(cfg.domain.datamodule, targets=targets)
    meta = datamodule.meta
    fill_from_data(cfg, meta)
    check_model_fits_data(cfg.model, meta)
    if cfg.get("ckpt_path"):
        check_resume(cfg.ckpt_path, model_config(cfg, targets, meta))
    task = build_task(cfg, meta, targets)
    trainer = build_trainer(cfg)
    if "plan" in meta and trainer.is_global_zero:  # a domain's data-derived plan (e.g. MRI), also in the checkpoint
        write_json(Path(cfg.run_dir) / "plan.json", meta["plan"])
    trainer.fit(task, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    val = _scalars(trainer.callback_metrics, "val/")
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    trainer.test(task, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
    test = _scalars(trainer.callback_metrics, "test/")
    run_dir = Path(cfg.run_dir)
    metrics = {
        "val": val,
        "test": test,
        "epochs": trainer.current_epoch,
        "best_checkpoint": best,
        "last_checkpoint": str(run_dir / "checkpoints" / "last.ckpt"),
    }
    if trainer.is_global_zero:
        write_json(run_dir / "metrics.json", metrics)
        log.info("metrics written to %s", run_dir / "metrics.json")
    return metrics
