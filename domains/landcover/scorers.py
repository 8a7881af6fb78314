"""Land-cover evaluation: the held-out rectangles of a split (whole val/test scenes or hold-out blocks) streamed
through the same tiled inference as predict, every finished row block scored against the label raster: per-class
IoU and F1, and with task=instance|panoptic panoptic quality and object counts per rectangle, in bounded memory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.contracts import Item, Job, Mode, Prediction
from segsuite.core.domain import BaseEvaluation, BaseSink, ScoreSink, SemanticScorer
from segsuite.core.errors import ConfigError
from segsuite.core.evaluate import SEMANTIC_REPORTS, SemanticScores, check_baseline
from segsuite.core.instances import PanopticMetrics, StripLabeller, StripPanoptic, truth_cutter, write_panoptic_reports
from segsuite.core.io import write_csv
from segsuite.domains.landcover.baseline import RF_REPORTS, ForestScorer, fit_forest
from segsuite.domains.landcover.dataset import Region
from segsuite.domains.landcover.reader import OpenedScene

INSTANCE_REPORTS = ["panoptic.json", "panoptic_per_class.csv", "instance_counts.csv"]
COUNT_COLUMNS = ["scene", "row0", "col0", "row1", "col1", "class", "predicted", "true"]


@dataclass
class LandCoverEvaluation(BaseEvaluation):
    """The held-out regions of ``split`` (auto: test if the data has test scenes, else val; resolved once, from the
    first data it sees); with ``baseline="rf"`` also a per-pixel Random Forest fitted on the training regions, scored
    on the same pixels (:mod:`segsuite.domains.landcover.baseline`)."""

    split: str = "auto"
    baseline: str | None = None
    _train: list[Region] = field(default_factory=list)

    def items(self, datasets: Mapping[str, Any], job: Job) -> tuple[str, list[Item]]:
        if self.split == "auto":
            self.split = "test" if "test" in datasets else "val"
        if self.split == "train":
            raise ConfigError(f"cannot evaluate on the training split; the data has held-out splits "
                              f"{sorted(set(datasets) - {'train'})} (or 'auto')")
        self._train = list(datasets["train"].regions) if "train" in datasets else []
        return super().items(datasets, job)

    def labelled(self, data: Any, job: Job) -> list[Item]:
        return [Item(r.scene.stem, r, target=r.scene) for r in data.regions]

    def scorers(self, job: Job) -> list[Any]:
        semantic = RegionScorer(job, self.split)
        scorers = [semantic] if job.mode is Mode.SEMANTIC else [semantic, InstanceScorer(job, self.split)]
        if check_baseline(self.baseline) == "rf":
            forest = fit_forest(self._train, job.model.meta)
            scorers.append(ForestScorer(forest, SemanticScores(job), semantic.scores, self.split))
        return scorers

    def report_files(self, job: Job) -> list[str]:
        return (SEMANTIC_REPORTS + (INSTANCE_REPORTS if job.mode is not Mode.SEMANTIC else [])
                + (RF_REPORTS if self.baseline else []))


@dataclass
class RegionScorer(SemanticScorer):
    """The core's semantic scores of every finished row block against the label raster; ``metrics.json`` adds the
    mean and per-class F1, the regions and how they were tiled."""

    regions: list[Region] = field(default_factory=list)

    def sink(self, item: Item, opened: OpenedScene, out: Path, job: Job) -> ScoreSink:
        self.regions.append(item.source)
        return ScoreSink(lambda p: self.scores.add(p.classes, opened.truth(p)[0]))

    def extra(self, job: Job) -> dict[str, Any]:
        metrics, options = self.scores.metrics, job.options
        scores = metrics.compute()
        return {"regions": [{"scene": str(r.scene.image), "rects": [asdict(rect) for rect in r.rects]}
                            for r in self.regions],
                "mf1": float(scores["mdice"]), "per_class_f1": dict(zip(metrics.class_names, scores["dice"].tolist())),
                "tile": options.tile and list(options.tile), "overlap": list(options.overlap), "blend": options.blend,
                "tta": bool(job.model.predictor.tta_flips)}


class InstanceScorer:
    """Panoptic quality of the thing classes (``panoptic.json``, ``panoptic_per_class.csv``) and predicted vs true
    object counts per held-out rectangle (``instance_counts.csv``). The true instances come from the instance raster,
    or without one from connected components of the labels."""

    def __init__(self, job: Job, split: str) -> None:
        meta, self.instancer, self.split = job.model.meta, job.instancer, split
        self.pq = PanopticMetrics(meta.num_classes, self.instancer.thing_ids, list(meta.class_names),
                                  meta.ignore_index)
        self.counts: list[dict[str, Any]] = []

    def sink(self, item: Item, opened: OpenedScene, out: Path, job: Job) -> RectInstances:
        return RectInstances(self, item, opened)

    def report(self, out: Path, job: Job) -> dict[str, Any]:
        extra = {"split": self.split, "task": job.mode.value, "checkpoint": job.model.checkpoint}
        panoptic = write_panoptic_reports(self.pq.compute(), out, True, extra)
        write_csv(out / "instance_counts.csv", self.counts, columns=COUNT_COLUMNS)
        return {"panoptic": panoptic}


class RectInstances(BaseSink):
    """Scores the instances of a region's rectangles block by block (rows, or column bands): predicted ids from a
    ``StripLabeller``, true ones from the instance raster or a second labeller cutting the label raster's
    components."""

    def __init__(self, scorer: InstanceScorer, item: Item, opened: OpenedScene) -> None:
        self.scorer, self.item, self.opened = scorer, item, opened
        self.open: dict[int, tuple[StripLabeller, StripLabeller | None, StripPanoptic]] = {}

    def update(self, p: Prediction) -> None:
        pq, instancer = self.scorer.pq, self.scorer.instancer
        target, ids = self.opened.truth(p)
        if p.source not in self.open:
            width = self.opened.sources[p.source].shape[1]
            truth = None if ids is not None else StripLabeller(truth_cutter(instancer), width)
            self.open[p.source] = (StripLabeller(instancer, width), truth, StripPanoptic(pq.is_thing, pq.ignore_index))
        labeller, truth, panoptic = self.open[p.source]
        pred = np.where(self.opened.valid(p), p.classes, pq.ignore_index)
        provisional = labeller.push(pred, p.border, p.col0)
        true_ids = ids if truth is None else truth.push(np.where(target == pq.ignore_index, -1, target), None, p.col0)
        panoptic.push(pred, provisional, target, true_ids)
        n, w = p.classes.shape
        if (p.row0 + n, p.col0 + w) == self.opened.sources[p.source].shape:  # the last block of the rectangle
            self._score(p.source)

    def _score(self, index: int) -> None:
        """Rectangle ``index`` is complete: resolve its ids, add its counts."""
        labeller, truth, panoptic = self.open.pop(index)
        predicted, resolved = labeller.finish(), None if truth is None else truth.finish()
        self.scorer.pq.add_counts(panoptic.finish(predicted, resolved))
        things = self.scorer.instancer.thing_ids
        true = panoptic.true_counts() if resolved is None else {c: int((resolved.classes == c).sum()) for c in things}
        rect = asdict(self.opened.sources[index].region)
        for c in things:
            self.scorer.counts.append({"scene": self.item.name, **rect, "class": self.scorer.instancer.class_names[c],
                                       "predicted": int((predicted.classes == c).sum()), "true": true[c]})

    def close(self) -> None:
        return None
