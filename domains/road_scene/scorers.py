"""Road-scene evaluation of a labelled split at full resolution, through the predict path's reader.

Reports: ``metrics.json`` (class mIoU and, for Cityscapes, category mIoU; pixel accuracy; boundary F-score within
``boundary_tolerance`` px; for KITTI road MaxF, AP, precision and recall from P(road); per class scores; the
confusion matrix), ``per_class.csv``, ``confusion.png``, ``per_image.csv``. ``task=instance|panoptic`` adds panoptic
quality against the ``*_gtFine_instanceIds.png`` instances when the data has them (else the connected components of
the label map): ``panoptic.json``, ``panoptic_per_class.csv`` and the summary in ``metrics.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segsuite.core.contracts import Item, Job, Mode, Prediction
from segsuite.core.domain import BaseEvaluation, ScoreSink
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.evaluate import SEMANTIC_REPORTS, SemanticScores
from segsuite.core.images import image_size
from segsuite.core.instances import true_instances, write_panoptic_reports
from segsuite.core.instances.metrics import PanopticMetrics
from segsuite.core.io import write_csv
from segsuite.core.metrics import SegmentationMetrics

from .datasets import RoadSceneDataset
from .metrics import boundary_counts, boundary_f_from_counts, category_miou, kitti_road_counts, kitti_road_scores

log = logging.getLogger(__name__)
PANOPTIC_REPORTS = ["panoptic.json", "panoptic_per_class.csv"]
# summary key -> PanopticMetrics' key (precision, recall and F1 are over the thing instances)
PANOPTIC_SUMMARY = {"pq": "pq", "sq": "sq", "rq": "rq", "pq_things": "pq_things", "pq_stuff": "pq_stuff",
                    "thing_precision": "precision", "thing_recall": "recall", "thing_f1": "f1"}


@dataclass
class RoadSceneEvaluation(BaseEvaluation):
    """The ``split`` of the dataset builder's output; ``boundary_tolerance``: boundary F-score tolerance in px."""

    split: str = "val"
    boundary_tolerance: float = 2.0
    data: RoadSceneDataset | None = field(default=None, repr=False)
    _last: tuple[int, np.ndarray] | None = field(default=None, repr=False)

    def labelled(self, data: RoadSceneDataset, job: Job) -> list[Item]:
        meta = job.model.meta
        for key in ("label_format", "ignore_index"):
            ours = meta[key]
            if ours != data.meta[key]:
                raise ConfigError(f"checkpoint {job.model.checkpoint} was trained with {key}={ours} but the "
                                  f"evaluation data has {key}={data.meta[key]}; evaluate on data of the same dataset "
                                  "and classes")
        for image, label in data.files:  # before any inference: every label there, of its image's size
            if not label.is_file():
                raise DataError(f"no label for image {image}: {label} does not exist")
            (ih, iw), (lh, lw) = image_size(image), image_size(label)
            if (ih, iw) != (lh, lw):
                raise DataError(f"image {image} is {ih}x{iw} (HxW) but its label {label} is {lh}x{lw}")
        self.data = data
        return [Item(image.name, image, target=i) for i, (image, _) in enumerate(data.files)]

    def scorers(self, job: Job) -> list[Any]:
        semantic = RoadSceneScorer(self, SemanticScores(job))
        if job.mode is Mode.SEMANTIC:
            return [semantic]
        semantic.panoptic = PanopticScorer(self, job)
        return [semantic.panoptic, semantic]  # the panoptic summary goes into metrics.json too

    def report_files(self, job: Job) -> list[str]:
        return SEMANTIC_REPORTS + ["per_image.csv"] + (PANOPTIC_REPORTS if job.mode is not Mode.SEMANTIC else [])

    def extra(self, job: Job) -> dict[str, Any]:
        return {"split": self.split, "checkpoint": job.model.checkpoint, "images": len(self.data)}

    def truth(self, index: int) -> np.ndarray:
        """Ground truth ``(H, W)`` int64 of item ``index``, decoded once for every scorer (DataError naming the file
        for unknown ids)."""
        if self._last is None or self._last[0] != index:
            self._last = (index, self.data.decode(self.data.files[index][1]))
        return self._last[1]


@dataclass
class RoadSceneScorer:
    """Class and category mIoU (core confusion matrix), boundary F, KITTI road counts, a row per image."""

    evaluation: RoadSceneEvaluation
    scores: SemanticScores
    panoptic: PanopticScorer | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    boundary: np.ndarray | None = None
    kitti: dict[str, Any] | None = None

    def sink(self, item: Item, opened: Any, out: Path, job: Job) -> ScoreSink:
        return ScoreSink(lambda p: self.add(item, p, job))

    def add(self, item: Item, p: Prediction, job: Job) -> None:
        meta, evaluation = job.model.meta, self.evaluation
        k, ignore = meta.num_classes, meta.ignore_index
        labels, gt = p.classes.astype(np.int64), evaluation.truth(item.target)
        self.scores.add(labels, gt)
        image = SegmentationMetrics(k, ignore)
        image.update(torch.from_numpy(labels)[None], torch.from_numpy(gt)[None])
        scores = image.compute()
        counts = boundary_counts(labels, gt, k, evaluation.boundary_tolerance, ignore)
        self.boundary = counts if self.boundary is None else self.boundary + counts
        row = {"image": str(item.source), "label": str(evaluation.data.files[item.target][1]),
               "pixels": int(scores["confmat"].sum()), "miou": float(scores["miou"]),
               "pixel_accuracy": float(scores["pixel_accuracy"]),
               "boundary_f": boundary_f_from_counts(counts)["mean_f_score"]}
        if meta["label_format"] == "kitti_road":
            road = p.probabilities[int(meta.get("road_class", 1))].cpu().numpy()
            kc = kitti_road_counts(road, gt, ignore)
            row["max_f"] = kitti_road_scores(kc)["MaxF"] if kc["pos"] else float("nan")
            self.kitti = kc if self.kitti is None else {key: self.kitti[key] + kc[key] for key in kc}
        self.rows.append(row)

    def report(self, out: Path, job: Job) -> dict[str, Any]:
        meta, names = job.model.meta, list(job.model.meta.class_names)
        boundary = boundary_f_from_counts(self.boundary)
        extra = {**self.evaluation.extra(job), **(self.panoptic.summary if self.panoptic else {}),
                 "boundary_f": boundary["mean_f_score"], "boundary_tolerance": self.evaluation.boundary_tolerance,
                 "boundary_f_per_class": dict(zip(names, boundary["f_score"].tolist()))}
        if "categories" in meta:
            cats = meta["categories"]
            confmat = self.scores.metrics.compute()["confmat"].numpy()
            result = category_miou(confmat, cats["class_to_category"], cats["names"])
            extra.update(category_miou=result["mIoU"], category_iou=result["per_category"])
        if self.kitti is not None:
            if not self.kitti["pos"]:
                raise DataError("KITTI road scores need road pixels, but no ground truth of the split holds any")
            extra["kitti_road"] = kitti_road_scores(self.kitti)
        write_csv(out / "per_image.csv", self.rows)
        result = self.scores.report(out, extra)
        log.info("category mIoU %s, boundary F %.4f over %d images",
                 f"{result['category_miou']:.4f}" if "category_miou" in result else "n/a", result["boundary_f"],
                 len(self.rows))
        return result


@dataclass
class PanopticScorer:
    """Panoptic quality: the core's instances of each prediction against the data's (or connected components)."""

    evaluation: RoadSceneEvaluation
    job: Job
    summary: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        meta = self.job.model.meta
        self.metrics = PanopticMetrics(meta.num_classes, self.job.instancer.thing_ids, list(meta.class_names),
                                       meta.ignore_index)

    def sink(self, item: Item, opened: Any, out: Path, job: Job) -> ScoreSink:
        return ScoreSink(lambda p: self.add(item.target, p))

    def add(self, index: int, p: Prediction) -> None:
        gt = self.evaluation.truth(index)
        ids = true_instances(self.job.instancer, gt, self.evaluation.data.load_instances(index, gt))
        self.metrics.update(p.classes.astype(np.int64), p.instances.ids, gt, ids)

    def report(self, out: Path, job: Job) -> dict[str, Any]:
        meta, data = job.model.meta, self.evaluation.data
        things = {"mode": job.mode.value, "things": [meta.class_names[t] for t in job.instancer.thing_ids],
                  "instance_targets": "instanceIds" if data.meta.get("has_instances") else "connected components"}
        scores = write_panoptic_reports(self.metrics.compute(), out, True, {**self.evaluation.extra(job), **things})
        self.summary = {ours: scores[theirs] for ours, theirs in PANOPTIC_SUMMARY.items()}
        log.info("PQ %.4f (SQ %.4f, RQ %.4f; things %.4f, stuff %.4f), thing instance F1 %.4f",
                 *(self.summary[k] for k in ("pq", "sq", "rq", "pq_things", "pq_stuff", "thing_f1")))
        return self.summary
