"""``predict(cfg)``: load a checkpoint, build the tile predictor, hand both to the domain's writer."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra.utils
import numpy as np
from omegaconf import DictConfig

from core.checkpoint import load_task
from core.errors import ConfigError, DataError
from core.inference import TilePredictor, predict_array
from core.io import atomic_path, check_writable
from core.task import SegmentationTask

log = logging.getLogger(__name__)


def load_for_domain(cfg: DictConfig) -> tuple[SegmentationTask, TilePredictor]:
    """The checkpoint's task (checked to belong to ``cfg.domain``) and a predictor for it."""
    task = load_task(cfg.checkpoint)
    trained_on = task.hparams.get("domain")
    if trained_on and trained_on != cfg.domain.name:
        raise ConfigError(f"checkpoint {cfg.checkpoint} was trained for domain {trained_on!r}, not "
                          f"{cfg.domain.name!r}; run with domain={trained_on}")
    flips = list(cfg.domain.get("tta_flips", [])) if cfg.get("tta") else []
    return task, TilePredictor(task.net, device=cfg.get("device"), amp=cfg.get("amp", False), tta_flips=flips)


def predict(cfg: DictConfig) -> Any:
    """Run the domain's predict function (``cfg.domain.predict``) on ``cfg.input`` -> ``cfg.output``."""
    task, predictor = load_for_domain(cfg)
    run = hydra.utils.instantiate(cfg.domain.predict)
    return run(task=task, predictor=predictor, input=cfg.input, output=cfg.output, overwrite=cfg.overwrite)


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
