"""Evaluate a land-cover checkpoint on the held-out split through the same tiled-inference path as prediction:
each held-out rectangle (a whole val/test scene or a hold-out block) is a ``RasterSource`` region streamed
through ``sliding_window``, and every finished row block is scored against the label raster."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict
from typing import Any

import hydra.utils
import numpy as np
import torch
from omegaconf import DictConfig
from rasterio.windows import Window

from core.errors import ConfigError, DataError
from core.evaluate import write_reports
from core.inference import TilePredictor, sliding_window
from core.metrics import SegmentationMetrics
from domains.landcover.dataset import Region
from domains.landcover.inference import RasterSource
from domains.landcover.io import open_raster, read_label_window

log = logging.getLogger(__name__)


def held_out_regions(cfg: DictConfig, class_names: Sequence[str], split: str = "auto") -> tuple[str, list[Region]]:
    """The split's regions from the domain's dataset builder (``cfg.domain.datamodule.datasets``), with the same
    checks as training; its classes must be the checkpoint's ``class_names``. ``auto``: ``test`` if the data has a
    test split, else ``val``."""
    build = hydra.utils.instantiate(cfg.domain.datamodule.datasets, rare_class_weighting=False)  # no sampling index
    datasets = build()
    if split == "auto":
        split = "test" if "test" in datasets else "val"
    if split not in datasets or split == "train":
        held = sorted(set(datasets) - {"train"})
        raise ConfigError(f"cannot evaluate on split {split!r}; the data has held-out splits {held} (or 'auto')")
    names = datasets[split].class_map.names
    if list(names) != list(class_names):
        raise ConfigError(f"the data's classes {names} are not the checkpoint's {list(class_names)}")
    return split, list(datasets[split].regions)


def targets(labels: np.ndarray, labelled: np.ndarray, valid: np.ndarray, num_classes: int,
            ignore_index: int, where: str) -> np.ndarray:
    """Class ids ``(h, w)`` int64 to score against: ``ignore_index`` where the label is nodata/ignored or the
    input is nodata (``valid`` False); values outside 0..K-1 are a DataError naming ``where``."""
    keep = labelled & valid & (labels != ignore_index)
    bad = np.unique(labels[keep & ((labels < 0) | (labels >= num_classes))])
    if bad.size:
        raise DataError(f"{where}: label values {bad.tolist()} are not class ids 0..{num_classes - 1} "
                        f"(nor the ignore index {ignore_index})")
    return np.where(keep, labels, ignore_index)


def score_region(predictor: TilePredictor, region: Region, meta: dict[str, Any], metrics: SegmentationMetrics,
                 tile: Sequence[int], overlap: Sequence[int], batch_size: int, blend: str) -> None:
    """Stream every rectangle of ``region`` through ``sliding_window`` and update ``metrics`` row block by block."""
    with ExitStack() as stack:
        sources = [stack.enter_context(RasterSource(region.scene.image, meta, rect)) for rect in region.rects]
        label_src = stack.enter_context(open_raster(region.scene.label, check_data=False))
        blocks = sliding_window(predictor, sources, metrics.num_classes, tuple(tile), tuple(overlap), batch_size,
                                blend, progress=f"evaluate {region.scene.stem}")
        for index, row0, logits, covered in blocks:
            source, n = sources[index], logits.shape[1]
            rect = source.region
            labels, labelled = read_label_window(label_src, Window(rect.col0, rect.row0 + row0, rect.width, n))
            valid = source.valid_rows(row0, n) & covered.cpu().numpy()
            target = targets(labels, labelled, valid, metrics.num_classes, metrics.ignore_index,
                             str(region.scene.label))
            metrics.update(logits.max(0).indices[None].cpu(), torch.from_numpy(target)[None])  # argmax, faster


def evaluate(task: Any, predictor: TilePredictor, cfg: DictConfig, output_dir: str, overwrite: bool = True,
             split: str = "auto", tile: Sequence[int] = (512, 512), overlap: Sequence[int] = (64, 64),
             batch_size: int = 8, blend: str = "gaussian") -> dict[str, Any]:
    """Per-class IoU and F1 (= Dice), mIoU and the confusion matrix of ``task`` on the held-out ``split``.

    Writes ``metrics.json``, ``per_class.csv`` and ``confusion.png`` into ``output_dir``; returns the metrics.
    """
    hp = task.hparams
    meta = dict(hp.data_meta)
    split, regions = held_out_regions(cfg, hp.class_names, split)
    metrics = SegmentationMetrics(hp.num_classes, hp.ignore_index, hp.class_names)
    for region in regions:
        score_region(predictor, region, meta, metrics, tile, overlap, batch_size, blend)
    scores = metrics.compute()
    extra = {
        "split": split,
        "checkpoint": str(cfg.get("checkpoint")),
        "regions": [{"scene": str(r.scene.image), "rects": [asdict(rect) for rect in r.rects]}
                    for r in regions],
        "mf1": float(scores["mdice"]),
        "per_class_f1": dict(zip(metrics.class_names, scores["dice"].tolist())),
        "tile": list(tile), "overlap": list(overlap), "blend": blend, "tta": bool(predictor.tta_flips),
    }
    return write_reports(metrics, output_dir, overwrite, extra)
