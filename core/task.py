"""The one LightningModule for every domain: network, loss, metrics, optimiser and scheduler injected."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from segsuite.core.errors import ConfigError
from segsuite.core.metrics import SegmentationMetrics
from segsuite.core.models.registry import build_network
from segsuite.core.schedules import build_scheduler, refit, settings

STAGES = ("train", "val", "test")

# Epoch metrics are reduced by torchmetrics before they are logged; Lightning's advice to sync them again is moot.
warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")


class SegmentationTask(L.LightningModule):
    """Semantic segmentation: ``model`` maps images (B, C, H, W) to logits (B, K, H, W).

    Everything needed to rebuild the network and read new data is kept in the hyper-parameters, so a
    checkpoint alone is enough for prediction (see :func:`segsuite.core.checkpoint.load_task`).

    Args:
        model: the network's config, a plain mapping with ``_target_`` (e.g. ``segsuite.core.models.create_model``).
        num_classes, class_names, ignore_index: the label space.
        data_meta: what the data module reports about its data (channels, normalisation, patch size...).
        loss: the training loss (not stored; absent when loaded only for inference).
        optimizer: ``params -> Optimizer`` (a Hydra ``_partial_``).
        scheduler: ``optimizer -> LRScheduler`` or None; it steps after every optimiser step, and a length left
            None (``T_max``, ``total_iters``, ``total_steps``) is the run's number of optimiser steps.
        domain: the domain's name, so predict/evaluate can check they were given a matching checkpoint.
        instances: border weighting settings (``segsuite.core.instances.InstanceTargets.describe()``) or None. With
            ``border_channel`` the network has one more output than classes: the border logit, trained with binary
            cross-entropy; with a batch ``"weight"`` map the class loss is weighted per pixel.
        things: the thing classes (names) of the domain config (``domain.things``), kept for predict.
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        num_classes: int,
        ignore_index: int = 255,
        class_names: Sequence[str] | None = None,
        data_meta: Mapping[str, Any] | None = None,
        domain: str = "",
        loss: nn.Module | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        instances: Mapping[str, Any] | None = None,
        things: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["loss", "optimizer", "scheduler"])
        self.net = build_network(dict(model))
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.border_channel = bool(instances and instances.get("border_channel"))
        self.border_loss_weight = float((instances or {}).get("border_loss_weight", 1.0))
        if instances and loss is not None and not getattr(loss, "takes_weight_map", False):
            raise ConfigError(f"border weighting weights the loss per pixel, which {type(loss).__name__} cannot; "
                              f"use loss=ce or loss=dice_ce (its cross-entropy term is weighted)")
        names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.metrics = nn.ModuleDict(
            {f"{stage}_metrics": SegmentationMetrics(num_classes, ignore_index, names) for stage in STAGES}
        )

    @property
    def out_channels(self) -> int:
        """The network's outputs: one logit per class, plus the border logit last when trained with one."""
        return self.hparams.num_classes + int(self.border_channel)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def border_loss(self, border_logits: torch.Tensor, border: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of the border channel (B, H, W) over labelled pixels, the rare border pixels weighted
        by the batch's background-to-border ratio (at most 100) so the channel does not settle on "no border"."""
        labelled = (masks != self.hparams.ignore_index).float()
        positives = (border * labelled).sum()
        pos_weight = ((labelled.sum() - positives) / positives.clamp_min(1.0)).clamp(1.0, 100.0).detach()
        bce = nn.functional.binary_cross_entropy_with_logits(border_logits, border, reduction="none",
                                                             pos_weight=pos_weight)
        return (bce * labelled).sum() / labelled.sum().clamp_min(1.0)

    def model_step(self, batch: Mapping[str, torch.Tensor], stage: str) -> torch.Tensor:
        """The one step shared by train/val/test: forward, loss, metric update, logging."""
        images, masks = batch["image"], batch["mask"]  # (B, C, H, W), (B, H, W)
        logits = self(images)
        weight_map = batch.get("weight")  # (B, H, W) with border weighting
        if self.border_channel:
            logits, border_logits = logits[:, :-1], logits[:, -1]
        loss = self.loss(logits, masks, weight_map=weight_map) if weight_map is not None else self.loss(logits, masks)
        if self.border_channel:
            loss = loss + self.border_loss_weight * self.border_loss(border_logits, batch["border"], masks)
        self.metrics[f"{stage}_metrics"].update(logits.detach(), masks)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True,
                 sync_dist=stage != "train", batch_size=images.shape[0])
        return loss

    def training_step(self, batch, batch_idx):
        return self.model_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self.model_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self.model_step(batch, "test")

    def _log_epoch_metrics(self, stage: str) -> None:
        metrics = self.metrics[f"{stage}_metrics"]
        scores = metrics.flat(stage)  # compute() reduces the confusion matrix across processes
        miou = scores.pop(f"{stage}/miou")
        self.log_dict(scores)
        self.log(f"{stage}/miou", miou, prog_bar=True)
        metrics.reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._log_epoch_metrics("val")
        else:
            self.metrics["val_metrics"].reset()

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def on_train_start(self) -> None:
        """A resumed scheduler carries the old run's length; refit it to this run's
        (``segsuite.core.schedules.refit``)."""
        for config in self.trainer.lr_scheduler_configs:
            refit(config.scheduler, getattr(self, "planned_schedule", {}))

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise RuntimeError("this task was loaded for inference only; give it an optimizer to train")
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = build_scheduler(self.scheduler_factory, optimizer, self.trainer.estimated_stepping_batches)
        self.planned_schedule = settings(scheduler)  # before a resume overwrites them (see on_train_start)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):  # steps on a metric: per validation
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
