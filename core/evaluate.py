"""``evaluate(cfg)``: metrics of a checkpoint on a labelled split, as JSON, CSV and a confusion-matrix PNG."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import hydra.utils
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from core.data import SegDataModule
from core.errors import DataError
from core.inference import TilePredictor
from core.io import atomic_path, write_json
from core.metrics import SegmentationMetrics
from core.plots import plot_confusion
from core.predict import load_for_domain
from core.task import SegmentationTask

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run the domain's evaluate function (``cfg.domain.evaluate``) and return its summary."""
    task, predictor, instancer = load_for_domain(cfg)
    run = hydra.utils.instantiate(cfg.domain.evaluate)
    kwargs = {} if instancer is None else {"mode": cfg.task, "instancer": instancer}
    return run(task=task, predictor=predictor, cfg=cfg, output_dir=cfg.output_dir, overwrite=cfg.overwrite, **kwargs)


def write_reports(metrics: SegmentationMetrics, output_dir: str | Path, overwrite: bool = True,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``metrics.json`` (summary + per class), ``per_class.csv`` and ``confusion.png`` in ``output_dir``."""
    out = Path(output_dir)
    scores = metrics.compute()
    per_class = [
        {"class": name, "iou": float(iou), "dice": float(dice), "accuracy": float(acc),
         "pixels": int(scores["confmat"][i].sum())}
        for i, (name, iou, dice, acc) in enumerate(
            zip(metrics.class_names, scores["iou"], scores["dice"], scores["accuracy"]))
    ]
    summary = {k: float(scores[k]) for k in ("miou", "mdice", "pixel_accuracy")}
    result = {**summary, **(extra or {}), "per_class": per_class, "confusion_matrix": scores["confmat"].tolist()}
    write_json(out / "metrics.json", result, overwrite)
    with atomic_path(out / "per_class.csv", overwrite) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(per_class[0]))
        writer.writeheader()
        writer.writerows(per_class)
    plot_confusion(scores["confmat"].numpy(), metrics.class_names, out / "confusion.png", overwrite)
    log.info("mIoU %.4f, pixel accuracy %.4f; reports in %s", summary["miou"], summary["pixel_accuracy"], out)
    return result


def evaluate_split(task: SegmentationTask, predictor: TilePredictor, cfg: DictConfig, output_dir: str,
                   overwrite: bool = True, split: str = "test") -> dict[str, Any]:
    """Evaluate on a split of the domain's data module (whole images through the predictor)."""
    datamodule: SegDataModule = hydra.utils.instantiate(cfg.domain.datamodule)
    datamodule.setup()
    if split not in datamodule.splits:
        raise DataError(f"the data has no {split!r} split; it has {sorted(datamodule.splits)}")
    hp = task.hparams
    metrics = SegmentationMetrics(hp.num_classes, hp.ignore_index, hp.class_names)
    loader = torch.utils.data.DataLoader(datamodule.splits[split], batch_size=datamodule.eval_batch_size)
    for batch in tqdm(loader, desc=f"evaluate {split}", unit="batch"):
        metrics.update(predictor(batch["image"]).cpu(), batch["mask"])
    return write_reports(metrics, output_dir, overwrite, extra={"split": split, "checkpoint": str(cfg.checkpoint)})
