"""Checkpoints describe themselves: the network config, label space and data metadata travel inside."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from segsuite.core.errors import ConfigError, DataError
from segsuite.core.models.pretrained import trained_weights_follow
from segsuite.core.models.registry import check_network_config
from segsuite.core.task import SegmentationTask


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only`` safe loading; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for truncated or foreign files
        raise DataError(f"cannot read checkpoint {path}: {err}") from err
    if not isinstance(ckpt, dict) or "model" not in ckpt.get("hyper_parameters", {}):
        raise DataError(f"{path} is not a checkpoint written by this suite (no model description inside)")
    check_network_config(ckpt["hyper_parameters"]["model"], origin=f"checkpoint {path}")  # before anything runs
    return ckpt


def load_task(path: str | os.PathLike) -> SegmentationTask:
    """Rebuild the trained task from a checkpoint alone, in eval mode on the CPU. The network is built bare (an
    encoder weights file named in its config is not read, nothing is downloaded): the trained weights replace it."""
    ckpt = read_checkpoint(path)
    hparams = ckpt["hyper_parameters"]
    with trained_weights_follow():
        task = SegmentationTask(**hparams)
    try:
        task.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise ConfigError(f"the weights in {path} do not fit the network it describes ({hparams['model']}): "
                          f"{str(err).splitlines()[0]}") from err
    return task.eval()


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's self-description (model, classes, data metadata, epoch) without building the net."""
    ckpt = read_checkpoint(path)
    return {**ckpt["hyper_parameters"], "epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step")}
