"""Evaluate a land-cover checkpoint on the held-out split through the same tiled-inference path as prediction:
each held-out rectangle (a whole val/test scene or a hold-out block) is a ``RasterSource`` region streamed
through ``sliding_window``, and every finished row block is scored against the label raster."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import hydra.utils
import numpy as np
import torch
from omegaconf import DictConfig
from rasterio.windows import Window

from core.errors import ConfigError, DataError
from core.evaluate import write_reports
from core.inference import TilePredictor, sliding_window
from core.instances import (
    Instancer,
    PanopticMetrics,
    StripLabeller,
    StripPanoptic,
    split_logits,
    truth_cutter,
    write_panoptic_reports,
)
from core.io import write_csv
from core.metrics import SegmentationMetrics
from core.predict import output_channels
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


class RectInstances:
    """Scores the instances of held-out rectangles strip by strip, in bounded memory: predicted instances from a
    ``StripLabeller``, true ones from the instance raster (or, without one, a second labeller cutting connected
    components of the label raster); panoptic counts go into ``pq`` and one object-count row per thing class and
    rectangle into ``counts``."""

    def __init__(self, instancer: Instancer, pq: PanopticMetrics, counts: list[dict[str, Any]]) -> None:
        self.instancer, self.pq, self.counts = instancer, pq, counts
        self.truth_cutter = truth_cutter(instancer)
        self.open: dict[int, tuple[StripLabeller, StripLabeller | None, StripPanoptic]] = {}

    def add(self, index: int, width: int, semantic: np.ndarray, border: np.ndarray | None, target: np.ndarray,
            instances: np.ndarray | None) -> None:
        """One strip ``(n, W)`` of rectangle ``index``: predicted classes (ignore index on nodata), border
        probability, target classes and the instance raster's ids (None: no instance raster)."""
        if index not in self.open:
            truth = None if instances is not None else StripLabeller(self.truth_cutter, width)
            self.open[index] = (StripLabeller(self.instancer, width), truth,
                                StripPanoptic(self.pq.is_thing, self.pq.ignore_index))
        labeller, truth, panoptic = self.open[index]
        provisional = labeller.push(semantic, border)
        true_ids = instances if truth is None else truth.push(np.where(target == self.pq.ignore_index, -1, target))
        panoptic.push(semantic, provisional, target, true_ids)

    def score(self, index: int, scene: str, rect: dict[str, int]) -> None:
        """The rectangle is complete: resolve its ids, add its counts."""
        labeller, truth, panoptic = self.open.pop(index)
        predicted = labeller.finish()
        resolved_truth = None if truth is None else truth.finish()
        self.pq.add_counts(panoptic.finish(predicted, resolved_truth))
        true_counts = panoptic.true_counts() if resolved_truth is None else \
            {c: int((resolved_truth.classes == c).sum()) for c in self.instancer.thing_ids}
        for c in self.instancer.thing_ids:
            self.counts.append({"scene": scene, **rect, "class": self.instancer.class_names[c],
                                "predicted": int((predicted.classes == c).sum()), "true": true_counts[c]})


def score_region(predictor: TilePredictor, region: Region, meta: dict[str, Any], metrics: SegmentationMetrics,
                 tile: Sequence[int], overlap: Sequence[int], batch_size: int, blend: str,
                 instances: RectInstances | None = None, channels: int | None = None) -> None:
    """Stream every rectangle of ``region`` through ``sliding_window`` and update ``metrics`` row block by block
    (and, with ``instances``, collect each rectangle for instance scoring; ``channels`` = K + 1 with a border)."""
    k = metrics.num_classes
    with ExitStack() as stack:
        sources = [stack.enter_context(RasterSource(region.scene.image, meta, rect)) for rect in region.rects]
        label_src = stack.enter_context(open_raster(region.scene.label, check_data=False))
        instance_src = None
        if instances is not None and region.scene.instances is not None:
            instance_src = stack.enter_context(open_raster(region.scene.instances, check_data=False))
        blocks = sliding_window(predictor, sources, channels or k, tuple(tile), tuple(overlap), batch_size,
                                blend, progress=f"evaluate {region.scene.stem}")
        for index, row0, logits, covered in blocks:
            source, n = sources[index], logits.shape[1]
            rect = source.region
            window = Window(rect.col0, rect.row0 + row0, rect.width, n)
            labels, labelled = read_label_window(label_src, window)
            valid = source.valid_rows(row0, n) & covered.cpu().numpy()
            target = targets(labels, labelled, valid, k, metrics.ignore_index, str(region.scene.label))
            semantic, border = split_logits(logits, k)  # (n, W), border probability or None
            metrics.update(torch.from_numpy(semantic)[None], torch.from_numpy(target)[None])
            if instances is not None:
                ids = None if instance_src is None else read_label_window(instance_src, window)[0]
                pred = np.where(valid, semantic, metrics.ignore_index)
                instances.add(index, rect.width, pred, border, target, ids)
                if row0 + n == rect.height:
                    instances.score(index, region.scene.stem, asdict(rect))


def evaluate(task: Any, predictor: TilePredictor, cfg: DictConfig, output_dir: str, overwrite: bool = True,
             split: str = "auto", tile: Sequence[int] = (512, 512), overlap: Sequence[int] = (64, 64),
             batch_size: int = 8, blend: str = "gaussian", mode: str = "semantic",
             instancer: Instancer | None = None) -> dict[str, Any]:
    """Per-class IoU and F1 (= Dice), mIoU and the confusion matrix of ``task`` on the held-out ``split``.

    Writes ``metrics.json``, ``per_class.csv`` and ``confusion.png`` into ``output_dir``; returns the metrics. With
    ``instancer`` (task=instance|panoptic) also panoptic quality and instance precision/recall/F1 of the thing
    classes (``panoptic.json``, ``panoptic_per_class.csv``) and object counts per held-out rectangle
    (``instance_counts.csv``), streamed like the rest.
    """
    hp = task.hparams
    meta = dict(hp.data_meta)
    split, regions = held_out_regions(cfg, hp.class_names, split)
    metrics = SegmentationMetrics(hp.num_classes, hp.ignore_index, hp.class_names)
    pq, counts = None, []
    collect = None
    if instancer is not None:
        pq = PanopticMetrics(hp.num_classes, instancer.thing_ids, hp.class_names, hp.ignore_index)
        collect = RectInstances(instancer, pq, counts)
    for region in regions:
        score_region(predictor, region, meta, metrics, tile, overlap, batch_size, blend, collect,
                     output_channels(task, instancer) if instancer else None)
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
    result = write_reports(metrics, output_dir, overwrite, extra)
    if pq is not None:
        result["panoptic"] = write_panoptic_reports(pq.compute(), output_dir, overwrite,
                                                    {"split": split, "task": mode, "checkpoint": extra["checkpoint"]})
        write_csv(Path(output_dir) / "instance_counts.csv", counts, overwrite,
                  columns=["scene", "row0", "col0", "row1", "col1", "class", "predicted", "true"])
        p = result["panoptic"]
        log.info("PQ %.4f (things %.4f), thing-instance F1 %.4f", p["pq"], p["pq_things"], p["f1"])
    return result
