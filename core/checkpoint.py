"""Checkpoints describe themselves: the network config, label space and data metadata travel inside."""

from __future__ import annotations

import os
import re
import warnings
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's warning about a TorchScript archive: the error says it
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for truncated or foreign files
        raise DataError(f"cannot read checkpoint {path}: {load_error(path, err)}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt.get("hyper_parameters", {}):
        raise DataError(f"{path} is not a checkpoint written by this suite (no model description inside)")
    check_network_config(ckpt["hyper_parameters"]["model"], origin=f"checkpoint {path}")  # before anything runs
    return ckpt


def load_error(path: Path, err: BaseException) -> str:
    """Why torch's safe loading refused ``path``, in a few words; never torch's advice to load it unsafely."""
    text = str(err)
    blocked = re.search(r"unsupported GLOBAL ([\w.]+)", text, re.IGNORECASE)
    if blocked:
        return (f"it holds Python objects ({blocked.group(1)}) that could run code when loaded, so it is refused; a "
                "checkpoint written by this suite holds only tensors and plain values")
    if "TorchScript" in text:
        return "it is a TorchScript model, not a checkpoint; run it with runtime=torchscript model_file=" + str(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if path.suffix.lower() == ".onnx" or (head[:1] == b"\x08" and not head.startswith(b"PK")):
        return f"it is not a PyTorch checkpoint (an ONNX model?); run one with runtime=onnx model_file={path}"
    advice = ("weights_only", "Weights only load failed", "Check the documentation", "Please file an issue")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not any(a in line for a in advice)]
    return (lines[0][:200] if lines else type(err).__name__) + " (not a checkpoint written by this suite?)"


def load_task(path: str | os.PathLike) -> SegmentationTask:
    """Rebuild the trained task from a checkpoint alone, in eval mode on the CPU. The network is built bare (an
    encoder weights file named in its config is not read, nothing is downloaded): the trained weights replace it."""
    ckpt = read_checkpoint(path)
    hparams = ckpt["hyper_parameters"]
    try:
        with trained_weights_follow():
            task = SegmentationTask(**hparams)
    except TypeError as err:  # a hyper-parameter this version does not know
        raise ConfigError(f"checkpoint {path} has settings this version of segsuite does not know "
                          f"({str(err).splitlines()[0]}); it was written by another version") from None
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
