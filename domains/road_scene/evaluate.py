"""Evaluate a road-scene checkpoint on a labelled split at full resolution, through the predict path.

Reports (in ``output_dir``): ``metrics.json`` (summary: mIoU as the class mean and, for Cityscapes, the category
mean; pixel accuracy; boundary F-score; for KITTI road MaxF, AP, precision and recall from P(road); per class
IoU/Dice/accuracy; the confusion matrix), ``per_class.csv``, ``confusion.png`` and ``per_image.csv``.

With ``mode="instance"`` or ``"panoptic"`` the thing instances are also cut out of each full-resolution prediction
and scored against the ground truth's (the Cityscapes ``*_instanceIds.png`` when the data has them, else connected
components of the label map): panoptic quality PQ = SQ x RQ per class and overall, and instance precision, recall
and F1 over the thing classes, in ``panoptic.json`` and ``panoptic_per_class.csv`` (and the summary in
``metrics.json``).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra.utils
import numpy as np
import torch
from omegaconf import DictConfig

from core.errors import ConfigError, DataError
from core.evaluate import write_reports
from core.inference import TilePredictor
from core.instances import Instancer, true_instances, write_panoptic_reports
from core.instances.metrics import PanopticMetrics
from core.io import atomic_path, check_writable
from core.metrics import SegmentationMetrics
from core.predict import output_channels
from core.task import SegmentationTask

from .datasets import RoadSceneDataset
from .io import image_size
from .metrics import boundary_counts, boundary_f_from_counts, category_miou, kitti_road_counts, kitti_road_scores
from .panoptic import check_mode
from .predict import Prediction, check_meta, infer

log = logging.getLogger(__name__)
REPORTS = ("metrics.json", "per_class.csv", "confusion.png", "per_image.csv")
PANOPTIC_REPORTS = ("panoptic.json", "panoptic_per_class.csv")
# summary key -> PanopticMetrics' key (precision, recall and F1 are over the thing instances)
PANOPTIC_SUMMARY = {"pq": "pq", "sq": "sq", "rq": "rq", "pq_things": "pq_things", "pq_stuff": "pq_stuff",
                    "thing_precision": "precision", "thing_recall": "recall", "thing_f1": "f1"}


def _split(cfg: DictConfig, split: str) -> RoadSceneDataset:
    """The ``split`` dataset of the configured data (``cfg.domain.datamodule.datasets``)."""
    datasets = hydra.utils.instantiate(cfg.domain.datamodule.datasets)()
    if split not in datasets:
        raise DataError(f"the data at {cfg.domain.datamodule.datasets.root} has no {split!r} split; "
                        f"it has {sorted(datasets)}")
    return datasets[split]


def _check_compatible(meta: dict[str, Any], data_meta: dict[str, Any], checkpoint: str) -> None:
    """The checkpoint's classes and label format must be those of the data it is evaluated on."""
    for key in ("class_names", "label_format", "ignore_index"):
        if meta[key] != data_meta[key]:
            raise ConfigError(f"checkpoint {checkpoint} was trained with {key}={meta[key]} but the evaluation data "
                              f"has {key}={data_meta[key]}; evaluate on data of the same dataset and classes")


def _check_pairs(files: Sequence[tuple[Path, Path]]) -> None:
    """Before any inference: every image and label header is readable and their sizes agree (DataError naming
    both files otherwise)."""
    for image, label in files:
        if not label.is_file():
            raise DataError(f"no label for image {image}: {label} does not exist")
        (ih, iw), (lh, lw) = image_size(image), image_size(label)
        if (ih, iw) != (lh, lw):
            raise DataError(f"image {image} is {ih}x{iw} (HxW) but its label {label} is {lh}x{lw}")


class RoadSceneScores:
    """Accumulates every road-scene score over images: the core confusion matrix, boundary counts, KITTI counts.

    Args:
        meta: the checkpoint's data meta (class names, categories, label format, ignore index).
        tolerance: boundary F-score tolerance in pixels.
    """

    def __init__(self, meta: dict[str, Any], tolerance: float) -> None:
        self.meta = meta
        self.num_classes = len(meta["class_names"])
        self.ignore_index = int(meta["ignore_index"])
        self.tolerance = tolerance
        self.confusion = SegmentationMetrics(self.num_classes, self.ignore_index, meta["class_names"])
        self.boundary = np.zeros((self.num_classes, 4), dtype=np.int64)
        self.kitti: dict[str, Any] | None = None
        self.rows: list[dict[str, Any]] = []

    def update(self, pred: Prediction, gt: np.ndarray, image: Path, label: Path) -> None:
        """Add one image: prediction at full resolution, ground truth ``(H, W)`` int64."""
        labels = pred.labels.astype(np.int64)
        image_scores = SegmentationMetrics(self.num_classes, self.ignore_index)
        for metrics in (self.confusion, image_scores):
            metrics.update(torch.from_numpy(labels)[None], torch.from_numpy(gt)[None])
        scores = image_scores.compute()
        counts = boundary_counts(labels, gt, self.num_classes, self.tolerance, self.ignore_index)
        self.boundary += counts
        row = {"image": str(image), "label": str(label), "pixels": int(scores["confmat"].sum()),
               "miou": float(scores["miou"]), "pixel_accuracy": float(scores["pixel_accuracy"]),
               "boundary_f": boundary_f_from_counts(counts)["mean_f_score"]}
        if pred.road_prob is not None:
            kc = kitti_road_counts(pred.road_prob, gt, self.ignore_index)
            row["max_f"] = kitti_road_scores(kc)["MaxF"] if kc["pos"] else float("nan")
            self.kitti = kc if self.kitti is None else {k: self.kitti[k] + kc[k] for k in kc}
        self.rows.append(row)

    def summary(self) -> dict[str, Any]:
        """Scores beyond the core's (mIoU, pixel accuracy, per class): category mIoU, boundary F, KITTI."""
        names = self.meta["class_names"]
        boundary = boundary_f_from_counts(self.boundary)
        out: dict[str, Any] = {
            "boundary_f": boundary["mean_f_score"], "boundary_tolerance": self.tolerance,
            "boundary_f_per_class": dict(zip(names, boundary["f_score"].tolist())),
        }
        if "categories" in self.meta:
            cats = self.meta["categories"]
            confmat = self.confusion.compute()["confmat"].numpy()
            result = category_miou(confmat, cats["class_to_category"], cats["names"])
            out.update(category_miou=result["mIoU"], category_iou=result["per_category"])
        if self.kitti is not None:
            if not self.kitti["pos"]:
                raise DataError("KITTI road scores need road pixels, but no ground truth of the split holds any")
            out["kitti_road"] = kitti_road_scores(self.kitti)
        return out


class PanopticScores:
    """Panoptic quality over images: instances cut from each prediction by ``instancer``, ground-truth instances
    from the data (or connected components of its label map)."""

    def __init__(self, instancer: Instancer, meta: dict[str, Any]) -> None:
        self.instancer = instancer
        self.metrics = PanopticMetrics(len(meta["class_names"]), instancer.thing_ids, meta["class_names"],
                                       int(meta["ignore_index"]))

    def update(self, pred: Prediction, gt: np.ndarray, gt_instances: np.ndarray | None) -> None:
        """Add one image: prediction at full resolution, ground truth ``(H, W)`` int64 and its instance ids
        ``(H, W)`` (None: connected components)."""
        labels = pred.labels.astype(np.int64)
        predicted = self.instancer(labels, pred.border_prob)
        self.metrics.update(labels, predicted.ids, gt, true_instances(self.instancer, gt, gt_instances))

    def write(self, out: Path, overwrite: bool, extra: dict[str, Any]) -> dict[str, Any]:
        """Write the panoptic reports; returns the scalar summary under our names (``PANOPTIC_SUMMARY``)."""
        scores = write_panoptic_reports(self.metrics.compute(), out, overwrite, extra)
        return {ours: scores[theirs] for ours, theirs in PANOPTIC_SUMMARY.items()}


def _write_rows(rows: list[dict[str, Any]], path: Path, overwrite: bool) -> None:
    with atomic_path(path, overwrite) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def evaluate(task: SegmentationTask, predictor: TilePredictor, cfg: DictConfig, output_dir: str,
             overwrite: bool = True, split: str = "val", tile: Sequence[int] = (1024, 2048),
             overlap: Sequence[int] = (128, 256), batch_size: int = 2, blend: str = "gaussian",
             boundary_tolerance: float = 2.0, workers: int | None = None, progress: bool = True,
             mode: str = "semantic", instancer: Instancer | None = None) -> dict[str, Any]:
    """Score the checkpoint on ``split`` of ``cfg.domain.datamodule`` at full resolution with the predict path's
    inference (``predict.infer``: same resizing, tiling and upsampling) and write the reports to ``output_dir``.

    ``mode`` ``instance`` or ``panoptic`` (with ``instancer``: the thing classes and how to cut them) adds the
    panoptic scores (module docstring); ``predictor`` then returns ``core.predict.output_channels(task, instancer)``
    channels.

    Returns the summary also written to ``metrics.json`` (with ``pq, sq, rq, pq_things, pq_stuff,
    thing_precision, thing_recall, thing_f1`` in those modes).
    """
    meta = check_meta(task)
    check_mode(mode, instancer, meta)
    instancer = None if mode == "semantic" else instancer
    channels = output_channels(task, instancer)
    dataset = _split(cfg, split)
    _check_compatible(meta, dataset.meta, str(cfg.checkpoint))
    out = Path(output_dir)
    for name in REPORTS + (PANOPTIC_REPORTS if instancer is not None else ()):
        check_writable(out / name, overwrite)
    _check_pairs(dataset.files)
    scores = RoadSceneScores(meta, boundary_tolerance)
    panoptic = PanopticScores(instancer, meta) if instancer is not None else None
    images = [image for image, _ in dataset.files]
    for pred in infer(task, predictor, images, tile, overlap, batch_size, blend, workers=workers,
                      progress=f"evaluate {split}" if progress else False, channels=channels):
        image, label = dataset.files[pred.index]
        gt = dataset.decode(label)  # (H, W) int64, DataError naming the file for unknown ids
        if gt.shape != pred.labels.shape:
            raise DataError(f"image {image} is {pred.labels.shape} (HxW) but its label {label} is {gt.shape}")
        scores.update(pred, gt, image, label)
        if panoptic is not None:
            panoptic.update(pred, gt, dataset.load_instances(pred.index, gt))
    extra = {"split": split, "checkpoint": str(cfg.checkpoint), "images": len(images)}
    if panoptic is not None:
        things = {"mode": mode, "things": [meta["class_names"][t] for t in instancer.thing_ids],
                  "instance_targets": "instanceIds" if dataset.meta.get("has_instances") else "connected components"}
        extra.update(panoptic.write(out, overwrite, {**extra, **things}))
        log.info("PQ %.4f (SQ %.4f, RQ %.4f; things %.4f, stuff %.4f), thing instance F1 %.4f over %d %s images",
                 *(extra[k] for k in ("pq", "sq", "rq", "pq_things", "pq_stuff", "thing_f1")), len(images), split)
    extra.update(scores.summary())
    _write_rows(scores.rows, out / "per_image.csv", overwrite)
    result = write_reports(scores.confusion, out, overwrite, extra)
    log.info("mIoU %.4f (category mIoU %s), boundary F %.4f over %d %s images", result["miou"],
             f"{result['category_miou']:.4f}" if "category_miou" in result else "n/a", result["boundary_f"],
             len(images), split)
    return result
