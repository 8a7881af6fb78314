"""``train(cfg)``: fit, then test; leaves checkpoints/ and metrics.json in the run directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra.utils
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from segsuite.core.checkpoint import read_checkpoint
from segsuite.core.compiled import compile_network
from segsuite.core.data import SegDataModule
from segsuite.core.distributed import Ranks
from segsuite.core.errors import ConfigError
from segsuite.core.folds import FoldRequest, requested
from segsuite.core.inference.memory import keep_heap
from segsuite.core.instances import InstanceTargets
from segsuite.core.io import write_json
from segsuite.core.plan import PATIENCE
from segsuite.core.run_report import RunReport, stopped_early
from segsuite.core.task import SegmentationTask

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 10  # the run length of data without a plan (e.g. domain=toy) when none is given


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


def plan_class_weights(node: Any, meta: dict[str, Any]) -> Any:
    """A loss config (plain) with every ``class_weights: plan`` replaced by the plan's class weights."""
    if isinstance(node, dict):
        return {k: plan_class_weights(v, meta) if k != "class_weights" or v != "plan" else _weights(meta)
                for k, v in node.items()}
    return [plan_class_weights(v, meta) for v in node] if isinstance(node, list) else node


def _weights(meta: dict[str, Any]) -> list[float]:
    weights = (meta.get("plan") or {}).get("class_weights")
    if not weights:
        raise ConfigError("loss class_weights=plan, but this data has no plan with class weights; give a list, one "
                          "weight per class, or null")
    return list(weights)


def build_task(cfg: DictConfig, meta: dict[str, Any], targets: InstanceTargets | None = None) -> SegmentationTask:
    scheduler = cfg.get("scheduler")
    return SegmentationTask(
        model=model_config(cfg, targets, meta),
        num_classes=meta["num_classes"],
        ignore_index=meta["ignore_index"],
        class_names=meta["class_names"],
        data_meta=meta,
        domain=cfg.domain.name,
        loss=hydra.utils.instantiate(plan_class_weights(_plain(cfg.loss), meta)),
        optimizer=hydra.utils.instantiate(cfg.optimizer),
        scheduler=hydra.utils.instantiate(scheduler) if scheduler else None,
        instances=targets.describe() if targets is not None else None,
        things=list(_plain(cfg.domain.get("things")) or []),
    )


def check_epochs(trainer: DictConfig) -> None:
    """``trainer.max_epochs``: a whole number >= 1, or -1 (until stopped); null leaves it to ``max_steps`` (or the
    plan's budget). ``trainer.max_steps``: a whole number >= 1, or -1 / null."""
    epochs = trainer.get("max_epochs")
    whole = isinstance(epochs, int) and not isinstance(epochs, bool)
    if epochs is not None and (not whole or (epochs < 1 and epochs != -1)):
        raise ConfigError(f"trainer.max_epochs={epochs!r}: expected a whole number >= 1 (or -1: until stopped)")
    steps = trainer.get("max_steps")
    whole = isinstance(steps, int) and not isinstance(steps, bool)
    if steps is not None and (not whole or (steps < 1 and steps != -1)):
        raise ConfigError(f"trainer.max_steps={steps!r}: expected a whole number >= 1 (or -1 / null: from the plan)")


def apply_budget(cfg: DictConfig, meta: dict[str, Any]) -> dict[str, Any]:
    """Fill the run length the user left open from the data's plan (``meta["plan"]["budget"]``,
    :func:`segsuite.core.plan.budget`) and return what was used.

    An explicit ``trainer.max_epochs`` or ``trainer.max_steps`` wins (validation then follows
    ``val_check_interval`` / ``check_val_every_n_epoch`` as given). Otherwise the run is ``max_steps`` optimiser
    steps of the plan with validation every ``val_check_interval`` steps across epoch boundaries (unless
    ``trainer.val_check_interval`` is set); data without a plan trains :data:`DEFAULT_EPOCHS` epochs. Early stopping
    left at ``patience: null`` takes the plan's patience (validation rounds).
    """
    check_epochs(cfg.trainer)
    trainer = cfg.trainer
    epochs, steps = trainer.get("max_epochs"), trainer.get("max_steps")
    planned = (meta.get("plan") or {}).get("budget")
    with open_dict(trainer):
        if epochs is not None or steps not in (None, -1):
            used = {"source": "trainer", "max_epochs": epochs, "max_steps": steps}
            trainer.max_epochs = -1 if epochs is None else epochs
            trainer.max_steps = -1 if steps is None else steps
        elif planned is None:
            used = {"source": "default", "max_epochs": DEFAULT_EPOCHS}
            trainer.max_epochs, trainer.max_steps = DEFAULT_EPOCHS, -1
        else:
            used = {"source": "plan", **planned}
            trainer.max_epochs, trainer.max_steps = -1, int(planned["max_steps"])
            if trainer.get("val_check_interval") is None:
                trainer.val_check_interval = int(planned["val_check_interval"])
                trainer.check_val_every_n_epoch = None  # count steps across epochs
    stopper = (cfg.get("callbacks") or {}).get("early_stopping")
    if stopper is not None and stopper.get("patience") is None:
        with open_dict(stopper):
            stopper.patience = int((planned or {}).get("patience", PATIENCE))
    return used


def build_trainer(cfg: DictConfig) -> L.Trainer:
    """The Lightning trainer of ``cfg`` (its run length already checked and filled by :func:`apply_budget`)."""
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    if not loggers:
        callbacks = [c for c in callbacks if type(c).__name__ != "LearningRateMonitor"]
    return hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                   default_root_dir=cfg.run_dir)


def _saved(path: str | Path) -> dict[str, Any]:
    """A checkpoint's top-level entries, memory-mapped (cheap); empty if there is none."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True) if Path(path).is_file() else {}


def best_of_run(trainer: L.Trainer) -> dict[str, Any]:
    """The kept ``best`` checkpoint: its monitored score, and the epoch and optimiser step it was saved at."""
    callback = trainer.checkpoint_callback
    path = callback.best_model_path if callback else ""
    if not path:
        return {}
    saved = _saved(path)
    score = callback.best_model_score
    return {"monitor": callback.monitor, "score": None if score is None else float(score),
            "epoch": int(saved.get("epoch", -1)), "step": int(saved.get("global_step", -1)), "checkpoint": path}


def _scalars(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if k.startswith(prefix)}


def _report(trainer: L.Trainer) -> dict[str, Any]:
    """The run report's summary (conf/callbacks: ``report``), or {} when the run has none."""
    return next((c.summary for c in trainer.callbacks if isinstance(c, RunReport)), {})


def fold_request(cfg: DictConfig) -> FoldRequest | None:
    """``fold=K folds=N`` (or ``splits=PATH``): the fold this run trains, or None (the domain's own split)."""
    fold, path = cfg.get("fold"), cfg.get("splits")
    if fold is None:
        if path:
            raise ConfigError(f"splits={path} needs fold=K (which of its folds to train) or fold=all")
        return None
    return FoldRequest(fold, cfg.get("folds", 5), int(cfg.seed), str(path) if path else None)


def build_data(cfg: DictConfig, targets: InstanceTargets | None, request: FoldRequest | None = None
               ) -> tuple[SegDataModule, dict[str, Any]]:
    """The domain's datamodule, set up for ``request``'s fold (:func:`fold_request`); with a fold, its splits go to
    ``RUN/splits.json``."""
    with requested(request):
        datamodule: SegDataModule = hydra.utils.instantiate(cfg.domain.datamodule, targets=targets)
        meta = datamodule.meta  # sets the data up (the domain splits it here)
    if request is not None:
        if not request.splits:
            raise ConfigError(f"fold={request.fold}: domain {cfg.domain.name} does not split into folds with these "
                              "settings (explicit validation/test lists?); drop fold= or the explicit lists")
        if Ranks.from_env().rank == 0:  # the first process (DDP)
            write_json(Path(cfg.run_dir) / "splits.json", request.splits)
        meta = {**meta, "fold": {"fold": request.fold, "folds": request.folds}}
    return datamodule, meta


class KeepConfusion(L.Callback):
    """Keeps the test confusion matrix (rows: reference, columns: prediction) for ``metrics.json`` before the task
    resets its metrics (callbacks' epoch-end hooks run before the module's)."""

    def __init__(self) -> None:
        self.confmat: list[list[int]] | None = None

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = getattr(pl_module, "metrics", {})
        if "test_metrics" in metrics:
            self.confmat = metrics["test_metrics"].compute()["confmat"].long().tolist()


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the configured model on the configured domain, then test the best checkpoint.

    Returns the metrics also written to ``{run_dir}/metrics.json``. ``fold=all`` trains every fold
    (:func:`segsuite.core.cv.cross_validate`) and returns its summary.
    """
    keep_heap()  # on a CPU, each step's activations reused rather than faulted in afresh (1.3x a step)
    if str(cfg.get("fold")) == "all":
        from segsuite.core.cv import cross_validate

        return cross_validate(cfg)
    request = fold_request(cfg)  # a bad fold option is refused before any work
    L.seed_everything(cfg.seed, workers=True)
    targets = build_instance_targets(cfg)
    datamodule, meta = build_data(cfg, targets, request)
    fill_from_data(cfg, meta)
    check_model_fits_data(cfg.model, meta)
    if cfg.get("ckpt_path"):
        check_resume(cfg.ckpt_path, model_config(cfg, targets, meta))
    budget = apply_budget(cfg, meta)
    task = build_task(cfg, meta, targets)
    compile_network(task.net, cfg.get("compile"), "training")  # in place: checkpoints keep their keys
    trainer = build_trainer(cfg)
    if "plan" in meta and trainer.is_global_zero:  # the data-derived plan, also in the checkpoint (meta)
        write_json(Path(cfg.run_dir) / "plan.json", meta["plan"])
    log.info("run length: %s", ", ".join(f"{k} {v}" for k, v in budget.items()))
    trainer.fit(task, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    last = Path(cfg.run_dir) / "checkpoints" / "last.ckpt"
    if _saved(last).get("global_step") != trainer.global_step:  # written after each validation; a run can end
        trainer.save_checkpoint(last)                             # between two
    val = _scalars(trainer.callback_metrics, "val/")
    early = stopped_early(trainer)  # before test restores the callbacks' state
    best = best_of_run(trainer)
    confusion = KeepConfusion()
    trainer.callbacks.append(confusion)
    trainer.test(task, datamodule=datamodule, ckpt_path=best.get("checkpoint") or None, weights_only=True)
    test = _scalars(trainer.callback_metrics, "test/")
    run_dir = Path(cfg.run_dir)
    metrics = {
        "val": val,
        "test": test,
        "best": best,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "budget": budget,
        "stopped_early": early,
        "still_improving": _report(trainer).get("still_improving"),  # the run report's verdict (RunReport)
        "best_checkpoint": best.get("checkpoint", ""),
        "last_checkpoint": str(last),
    }
    if "fold" in meta:
        metrics["fold"] = meta["fold"]
    if confusion.confmat is not None:
        metrics["test_confusion"] = {"class_names": list(meta["class_names"]), "matrix": confusion.confmat}
    if trainer.is_global_zero:
        write_json(run_dir / "metrics.json", metrics)
        log.info("metrics written to %s", run_dir / "metrics.json")
    return metrics
