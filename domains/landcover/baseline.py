"""``evaluate baseline=rf``: the classical baseline a remote-sensing user would try first, next to the model.

A per-pixel Random Forest (scikit-learn, 100 trees, fixed seed) is fitted on the raw band values (the checkpoint's
bands) of a seeded random sample of at most 200k labelled pixels of the training regions -- the regions the model
was trained on, as the same dataset settings split them -- and predicts the same held-out pixels the model is scored
on, row block by row block, into the same confusion-matrix reports (``baseline_rf/metrics.json``, ``per_class.csv``,
``confusion.png``). The summary gets both mIoUs and per-class IoUs side by side, so one sees at once whether the
network earned its keep on the data.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.contracts import Item, Job, Prediction
from segsuite.core.domain import ScoreSink
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.evaluate import SEMANTIC_REPORTS, SemanticScores
from segsuite.core.regions import cells
from segsuite.domains.landcover.dataset import Region
from segsuite.domains.landcover.io import as_window, open_raster, read_label_window, read_window
from segsuite.domains.landcover.reader import OpenedScene

log = logging.getLogger(__name__)

RF_DIR = "baseline_rf"
RF_REPORTS = [f"{RF_DIR}/{name}" for name in SEMANTIC_REPORTS]


def training_pixels(regions: list[Region], meta: Any, max_pixels: int = 200_000, seed: int = 0,
                    cell: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Raw band values ``(N, C)`` float32 and classes ``(N,)`` of at most ``max_pixels`` labelled, valid pixels of
    ``regions``: cells read in a seeded random order until there are 4 x ``max_pixels`` candidates (or none left),
    then a seeded random subset (class proportions kept)."""
    bands, alpha, k, ignore = list(meta["bands"]), meta.get("alpha_is_mask"), meta["num_classes"], meta["ignore_index"]
    todo = [(region.scene, c) for region in regions for rect in region.rects for c in cells(rect, (cell, cell))]
    rng = np.random.default_rng(seed)
    xs, ys, have = [], [], 0
    for i in rng.permutation(len(todo)):
        scene, rect = todo[i]
        with open_raster(scene.image, check_data=False) as img, open_raster(scene.label, check_data=False) as lbl:
            image, valid = read_window(img, as_window(rect), bands, alpha)  # (C, h, w), (h, w)
            labels, labelled = read_label_window(lbl, as_window(rect))
        keep = valid & labelled & (labels >= 0) & (labels < k) & (labels != ignore)
        xs.append(image[:, keep].T)
        ys.append(labels[keep])
        have += int(keep.sum())
        if have >= 4 * max_pixels:
            break
    if not have:
        raise DataError("baseline=rf: the training regions hold no labelled, valid pixel to fit a forest on")
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(y) > max_pixels:
        pick = rng.choice(len(y), max_pixels, replace=False)
        x, y = x[pick], y[pick]
    return np.ascontiguousarray(x, np.float32), y


def fit_forest(regions: list[Region], meta: Any, trees: int = 100, max_pixels: int = 200_000, seed: int = 0) -> Any:
    """A fitted ``RandomForestClassifier`` on :func:`training_pixels` (all cores; its fit facts in ``.segsuite``)."""
    try:
        from sklearn.ensemble import RandomForestClassifier
    except ImportError:
        raise ConfigError("baseline=rf needs scikit-learn: pip install 'scikit-learn>=1.4'") from None
    start = time.perf_counter()
    x, y = training_pixels(regions, meta, max_pixels, seed)
    jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    forest = RandomForestClassifier(n_estimators=trees, n_jobs=jobs, random_state=seed).fit(x, y)
    forest.segsuite = {"trees": trees, "training_pixels": len(y), "fit_seconds": round(time.perf_counter() - start, 2)}
    log.info("baseline=rf: %d trees fitted on %d training pixels (%d bands) in %.1f s", trees, len(y), x.shape[1],
             forest.segsuite["fit_seconds"])
    return forest


@dataclass
class ForestScorer:
    """The forest's predictions of every held-out row block, scored as the model's are; ``model`` is the model's
    scores, reported beside the forest's."""

    forest: Any
    scores: SemanticScores
    model: SemanticScores
    split: str
    _seconds: list[float] = field(default_factory=list)

    def sink(self, item: Item, opened: OpenedScene, out: Path, job: Job) -> ScoreSink:
        return ScoreSink(lambda p: self.add(opened, p, job.model.meta.ignore_index))

    def add(self, opened: OpenedScene, p: Prediction, ignore_index: int) -> None:
        """Predict the block's covered pixels from their raw band values; score against the same truth."""
        start = time.perf_counter()
        data, _ = opened.sources[p.source].load((p.row0, p.col0, *p.classes.shape))  # (C, n, w) in the file's dtype
        covered = np.asarray(opened.valid(p), bool)  # (n, w): valid input, as the model was scored
        classes = np.full(covered.shape, ignore_index, np.int64)
        if covered.any():
            classes[covered] = self.forest.predict(data[:, covered].T.astype(np.float32))
        self.scores.add(classes, opened.truth(p)[0])
        self._seconds.append(time.perf_counter() - start)

    def report(self, out: Path, job: Job) -> dict[str, Any]:
        extra = {"split": self.split, "baseline": "rf", "checkpoint": job.model.checkpoint, **self.forest.segsuite,
                 "predict_seconds": round(sum(self._seconds), 2), "features": "raw band values",
                 "bands": list(job.model.meta["bands"])}
        forest = self.scores.report(out / RF_DIR, extra)
        model = self.model.metrics.compute()
        names = list(self.model.metrics.class_names)
        per_class = {name: {"model": float(model["iou"][i]), "rf": forest["per_class"][i]["iou"]}
                     for i, name in enumerate(names)}
        line = (f"mIoU model {float(model['miou']):.3f} vs rf {forest['miou']:.3f}; per-class IoU model/rf: "
                + ", ".join(f"{n} {v['model']:.2f}/{v['rf']:.2f}" for n, v in per_class.items()))
        log.info("baseline=rf on the %s split: %s", self.split, line)
        summary = {k: forest[k] for k in ("miou", "mdice", "pixel_accuracy", "trees", "training_pixels")}
        return {"baseline_rf": {**summary, "per_class_iou": {n: v["rf"] for n, v in per_class.items()}},
                "model_vs_rf": line}

