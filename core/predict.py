"""``predict(cfg)``: load a checkpoint, build the tile predictor, hand both to the domain's writer."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra.utils
import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from core.checkpoint import load_task
from core.errors import ConfigError, DataError
from core.inference import TilePredictor, predict_array
from core.instances import Instancer
from core.io import atomic_path, check_writable
from core.task import SegmentationTask

MODES = ("semantic", "instance", "panoptic")

log = logging.getLogger(__name__)


class FirstChannels(nn.Module):
    """The first ``k`` output channels of a network (its class logits without the border logit)."""

    def __init__(self, net: nn.Module, k: int) -> None:
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, : self.k]


def instancer_for(cfg: DictConfig, task: SegmentationTask) -> Instancer | None:
    """The instance cutter for ``cfg.task`` (None for semantic), its thing classes checked against the checkpoint's."""
    mode = cfg.get("task", "semantic")
    if mode not in MODES:
        raise ConfigError(f"task={mode!r} is not one of {', '.join(MODES)}")
    if mode == "semantic":
        return None
    if not cfg.get("instancer"):
        raise ConfigError(f"task={mode} needs an `instancer` config (conf/instancer/default.yaml)")
    instancer = hydra.utils.instantiate(cfg.instancer)(class_names=list(task.hparams.class_names))
    instancer.uses_border(task.border_channel)
    return instancer


def output_channels(task: SegmentationTask, instancer: Instancer | None) -> int:
    """Channels the predictor of :func:`load_for_domain` returns: the class logits, plus the border logit last when
    instances are cut with a model that predicts borders."""
    return task.hparams.num_classes + int(instancer is not None and instancer.uses_border(task.border_channel))


def load_for_domain(cfg: DictConfig) -> tuple[SegmentationTask, TilePredictor, Instancer | None]:
    """The checkpoint's task (checked to belong to ``cfg.domain``), a predictor for it, and the instance cutter for
    ``cfg.task`` (None for semantic). The predictor returns :func:`output_channels` channels."""
    task = load_task(cfg.checkpoint)
    trained_on = task.hparams.get("domain")
    if trained_on and trained_on != cfg.domain.name:
        raise ConfigError(f"checkpoint {cfg.checkpoint} was trained for domain {trained_on!r}, not "
                          f"{cfg.domain.name!r}; run with domain={trained_on}")
    instancer = instancer_for(cfg, task)
    channels = output_channels(task, instancer)
    net = task.net if channels == task.out_channels else FirstChannels(task.net, channels)
    flips = list(cfg.domain.get("tta_flips", [])) if cfg.get("tta") else []
    predictor = TilePredictor(net, device=cfg.get("device"), amp=cfg.get("amp", False), tta_flips=flips)
    return task, predictor, instancer


def predict(cfg: DictConfig) -> Any:
    """Run the domain's predict function (``cfg.domain.predict``) on ``cfg.input`` -> ``cfg.output``."""
    task, predictor, instancer = load_for_domain(cfg)
    run = hydra.utils.instantiate(cfg.domain.predict)
    kwargs = {} if instancer is None else {"mode": cfg.task, "instancer": instancer}
    return run(task=task, predictor=predictor, input=cfg.input, output=cfg.output, overwrite=cfg.overwrite, **kwargs)


def _npy_inputs(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.npy"))
        if not files:
            raise DataError(f"no .npy files in {path}")
        return files
    if not path.is_file():
        raise DataError(f"input {path} does not exist")
    return [path]


def predict_npy(task: SegmentationTask, predictor: TilePredictor, input: str, output: str, overwrite: bool = False,
                tile: tuple[int, int] = (256, 256), overlap: tuple[int, int] = (32, 32),
                batch_size: int = 8) -> list[Path]:
    """Toy-domain predict: arrays (C, H, W) in ``.npy`` files -> label arrays (H, W) uint8 in ``.npy``.

    ``input`` is a file or a folder; for a folder, ``output`` is a folder and names are kept.
    """
    src = Path(input)
    files = _npy_inputs(src)
    dst = [Path(output) / f.name for f in files] if src.is_dir() else [Path(output)]
    for path in dst:
        check_writable(path, overwrite)
    channels = task.hparams.data_meta["in_channels"]
    for f, out in zip(files, dst):
        image = np.load(f)
        if image.ndim != 3 or image.shape[0] != channels:
            raise DataError(f"{f} has shape {image.shape}; expected (C, H, W) with C={channels}")
        logits = predict_array(predictor, image, task.hparams.num_classes, tile=tuple(tile),
                               overlap=tuple(overlap), batch_size=batch_size)
        with atomic_path(out, overwrite) as tmp, open(tmp, "wb") as fh:
            np.save(fh, logits.argmax(0).byte().cpu().numpy())
        log.info("wrote %s", out)
    return dst
