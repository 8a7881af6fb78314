"""Per-volume evaluation of a Dixon checkpoint on the labelled cases of the dataset builder's ``val`` split (or
``test``: ``imagesTs/`` + ``labelsTs/``), predicted as by ``scripts/predict.py`` and compared with each label file on
the case's own grid. Reports: ``per_case.csv`` (per case and label: Dice, IoU, HD95 and ASSD in mm, volumes in mL,
relative volume error, mean FF inside the reference and predicted masks; :mod:`.metrics`), ``summary.csv`` (mean and
sample SD per label, also printed), the core's pooled semantic reports (``metrics.json`` also holds the rows, the
summary, ``mean_dice`` and the all-background ``baseline_mean_dice``), ``overlays/CASE.png``, ``predictions/``
(what ``predict`` writes for the case, by :class:`.writer.DixonSink`: ``CASE.nii.gz``, its instance and panoptic
files with ``task=instance|panoptic``), ``per_slice.csv`` (``per_slice=axial|coronal|sagittal``: per case, label
and slice along that axis the predicted and true areas in cm² and mean FF inside each, :mod:`.slices`); with
``task=instance|panoptic`` 3D panoptic quality against the connected components of the reference's thing classes:
``panoptic.json``, ``panoptic_per_class.csv`` and ``instances_per_case.csv``.
Voxels labelled ``ignore`` in dataset.json count for no label.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.contracts import Item, Job, Mode, Prediction
from segsuite.core.domain import BaseEvaluation, BaseSink
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.evaluate import SEMANTIC_REPORTS, SemanticScores
from segsuite.core.instances import Instancer, Instances, PanopticMetrics, true_instances, write_panoptic_reports
from segsuite.core.io import write_csv
from segsuite.core.measures import format_summary, summarize

from .cases import DatasetSpec, check_label_values, inference_channels, read_dataset_json
from .fatfraction import fat_fraction_map
from .io import Volume, check_same_grid, read_volume
from .metrics import METRICS, evaluate_case, save_overlay_png
from .reader import OpenedCase
from .slices import check_axis, measured_labels, slice_measurements
from .writer import DixonSink, DixonWriter, cleaned, cleanup_values, things

log = logging.getLogger(__name__)

PANOPTIC_REPORTS = ["panoptic.json", "panoptic_per_class.csv", "instances_per_case.csv"]
COUNT_COLUMNS = ["case", "class", "predicted", "true", "tp", "fp", "fn", "pq"]
SLICE_COLUMNS = ["case", "label", "slice_index", "position_mm", "pred_area_cm2", "true_area_cm2", "pred_mean_ff",
                 "true_mean_ff"]


@dataclass
class DixonEvaluation(BaseEvaluation):
    """The cases of ``split`` (``val``, or ``test``: the data set root's ``imagesTs/`` + ``labelsTs/``) as items:
    channel files as source, label file as target."""

    split: str = "val"
    largest_component: bool | str | Sequence[str] = False
    overlays: bool = True
    overlay_slices: int = 4
    save_predictions: bool = True
    per_slice: str | None = "axial"
    cases: list[str] = field(default_factory=list)

    def labelled(self, data: Any, job: Job) -> list[Item]:
        if self.split not in ("val", "test"):
            raise ConfigError(f"domain.evaluation.split={self.split!r}: choose val or test")
        check_axis(self.per_slice, "domain.evaluation.per_slice")
        self.cases = list(data.case_names)
        _warn_trained_cases(job.model.meta, self.split, self.cases)
        channels, ending = list(data.meta["dataset_channels"]), data.meta["file_ending"]
        water_fat = ["water", "fat"] if {"water", "fat"} <= set(channels) else []
        missing = next((n for n in inference_channels(job.model.meta) if n not in channels), None)
        if missing:
            raise DataError(f"the {self.split} cases have no channel {missing!r}; they have {channels}")
        names = list(dict.fromkeys(inference_channels(job.model.meta) + water_fat))
        items = []
        for case in data.cases:
            images = Path(case.reference.path).parent  # ROOT/imagesTr or ROOT/imagesTs
            labels = images.parent / images.name.replace("images", "labels", 1)
            files = {n: images / f"{case.name}_{channels.index(n):04d}{ending}" for n in names}
            items.append(Item(case.name, files, target=labels / f"{case.name}{ending}"))
        return items

    def scorers(self, job: Job) -> list[DixonScorer]:
        return [DixonScorer(self, cleanup_values(self.largest_component, job.model.meta, things(job)),
                            SemanticScores(job),
                            InstanceScores(job.instancer, job.model.meta.ignore_index) if job.instancer else None)]

    def predictions(self, case: str, out: Path, job: Job) -> dict[str, Path]:
        """``out/predictions/``: the files ``predict`` writes for the case (labels; instances, panoptic), if asked."""
        return DixonWriter().outputs(Item(case, None), out / "predictions", True, job) if self.save_predictions else {}

    def report_files(self, job: Job) -> list[str]:
        names = ["per_case.csv", "summary.csv", *SEMANTIC_REPORTS] + (["per_slice.csv"] if self.per_slice else [])
        names += PANOPTIC_REPORTS if job.mode is not Mode.SEMANTIC else []
        names += [f"overlays/{c}.png" for c in self.cases] if self.overlays else []
        return names + [str(p) for c in self.cases for p in self.predictions(c, Path(), job).values()]


def _warn_trained_cases(meta: Any, split: str, cases: list[str]) -> None:
    """Warn when the evaluated cases are not the checkpoint's own validation cases."""
    recorded = meta.get("cases") or {}
    trained = sorted(set(cases) & set(recorded.get("train", [])))
    if trained:
        log.warning("evaluating on %d case(s) the model was trained on: %s", len(trained), ", ".join(trained))
    elif split == "val" and recorded.get("val") and sorted(recorded["val"]) != sorted(cases):
        log.warning("the validation cases %s differ from the checkpoint's %s", cases, recorded["val"])


def baseline_dice(rows: list[dict]) -> float:
    """Mean over labels of the per-case Dice of an all-background prediction (1 for empty references, else 0)."""
    per_label: dict[str, list[float]] = {}
    for row in rows:
        per_label.setdefault(row["label"], []).append(1.0 if row["ref_volume_ml"] == 0 else 0.0)
    return float(np.mean([np.mean(v) for v in per_label.values()]))


class InstanceScores:
    """Panoptic quality over the cases (3D, one update per volume) and per-case instance counts per thing class;
    targets: the connected components of the reference's thing classes
    (:func:`segsuite.core.instances.true_instances`)."""

    STATES = ("iou_sum", "tp", "fp", "fn")

    def __init__(self, instancer: Instancer, ignore_index: int = 255) -> None:
        names = instancer.class_names
        self.instancer = instancer
        self.pooled = PanopticMetrics(len(names), instancer.thing_ids, names, ignore_index)
        self.rows: list[dict[str, Any]] = []

    def update(self, case: str, labels: np.ndarray, instances: Instances, target: np.ndarray) -> None:
        """Score one case: predicted class indices and instances, reference class indices ``target`` (ignored
        voxels = ``ignore_index``), all ``(X, Y, Z)``. The case's row counts are what it adds to the pooled sums."""
        true_ids = true_instances(self.instancer, target)
        before = [getattr(self.pooled, s).clone() for s in self.STATES]
        self.pooled.update(labels, instances.ids, target, true_ids)
        iou_sum, tp, fp, fn = ((getattr(self.pooled, s) - b).cpu().numpy() for s, b in zip(self.STATES, before))
        for c in self.instancer.thing_ids:
            seen = tp[c] + 0.5 * (fp[c] + fn[c])
            self.rows.append({"case": case, "class": self.instancer.class_names[c],
                              "predicted": int((instances.classes == c).sum()),
                              "true": len(np.unique(true_ids[(target == c) & (true_ids > 0)])),
                              "tp": int(tp[c]), "fp": int(fp[c]), "fn": int(fn[c]),
                              "pq": float(iou_sum[c] / seen) if seen else ""})  # PQ = SQ * RQ = IoU sum / seen


@dataclass
class DixonScorer:
    """Every score of the evaluation: per-case rows, the pooled confusion matrix, panoptic quality."""

    options: DixonEvaluation
    clean: list[int]
    semantic: SemanticScores
    panoptic: InstanceScores | None
    rows: list[dict] = field(default_factory=list)
    slice_rows: list[dict] = field(default_factory=list)
    spec: DatasetSpec | None = None

    def sink(self, item: Item, opened: OpenedCase, out: Path, job: Job) -> CaseSink:
        self.spec = self.spec or read_dataset_json(Path(item.target).parent.parent)
        return CaseSink(self, item, opened, out, job)

    def report(self, out: Path, job: Job) -> dict[str, Any]:
        summary, split, cases = summarize(self.rows, METRICS), self.options.split, self.options.cases
        write_csv(out / "per_case.csv", self.rows)
        write_csv(out / "summary.csv", summary)
        if self.options.per_slice:
            write_csv(out / "per_slice.csv", self.slice_rows, columns=SLICE_COLUMNS)
        mean_dice = float(np.nanmean([entry["dice_mean"] for entry in summary]))
        extra = {"split": split, "checkpoint": job.model.checkpoint, "cases": cases, "mean_dice": mean_dice,
                 "baseline_mean_dice": baseline_dice(self.rows), "labels": summary, "per_case": self.rows}
        lines = [f"\n{split} split, {len(cases)} case(s) (mean ± sd over cases):\n{format_summary(summary, METRICS)}\n"
                 f"mean Dice over labels {mean_dice:.4f} (all-background baseline {extra['baseline_mean_dice']:.4f})"]
        if self.panoptic is not None:
            write_csv(out / "instances_per_case.csv", self.panoptic.rows, columns=COUNT_COLUMNS)
            scores = write_panoptic_reports(self.panoptic.pooled.compute(), out, extra={"split": split, "cases": cases})
            panoptic = {k: v for k, v in scores.items() if k not in ("per_class", "split", "cases")}
            extra.update(pq=panoptic["pq"], f1=panoptic["f1"], panoptic=panoptic)
            lines.append(_panoptic_line(panoptic))
        result = self.semantic.report(out, extra)
        print("\n".join(lines))
        return result


def _panoptic_line(summary: dict[str, Any]) -> str:
    def fmt(key: str) -> str:
        return "n/a" if summary.get(key) is None else f"{summary[key]:.4f}"
    return (f"panoptic quality {fmt('pq')} (SQ {fmt('sq')}, RQ {fmt('rq')}; things {fmt('pq_things')}, stuff "
            f"{fmt('pq_stuff')}); instances: precision {fmt('precision')}, recall {fmt('recall')}, F1 {fmt('f1')}")


@dataclass
class CaseSink(BaseSink):
    """Scores one case against its label file."""

    scorer: DixonScorer
    item: Item
    opened: OpenedCase
    out: Path
    job: Job

    def update(self, prediction: Prediction) -> None:
        scorer, case = self.scorer, self.item.name
        classes, instances = cleaned(prediction, scorer.clean, self.job)
        reference, target = self.truth()
        ignored = target == self.job.model.meta.ignore_index  # dataset.json's ``ignore`` voxels count for no label
        scored = Volume(np.where(ignored, target, classes), reference.affine)
        volumes = self.opened.volumes
        scorer.rows += evaluate_case(case, reference, scored, scorer.spec.labels, volumes.get("water"),
                                     volumes.get("fat"))
        if scorer.options.per_slice:
            scorer.slice_rows += self.slices(scored, reference)
        scorer.semantic.add(classes, target)
        if scorer.panoptic is not None:
            scorer.panoptic.update(case, classes, instances, target)
        self.save(replace(prediction, classes=classes, instances=instances), reference)

    def truth(self) -> tuple[Volume, np.ndarray]:
        """The label file on the case's grid (values checked against dataset.json, ``ignore`` voxels carrying the
        checkpoint's ignore index, which no label has) and the same as targets ``(X, Y, Z)`` int64."""
        label = read_volume(self.item.target, self.item.name)
        check_same_grid({"image": self.opened.case.reference, "label": label}, self.item.name)
        values = check_label_values(label, self.scorer.spec, self.item.name, self.job.model.meta.ignore_index)
        return Volume(values, label.affine, label.path, label.header), values.astype(np.int64)

    def slices(self, predicted: Volume, reference: Volume) -> list[dict[str, Any]]:
        """``per_slice.csv`` rows of this case: areas and mean FF of the predicted and the true labels per slice."""
        volumes, axis = self.opened.volumes, self.scorer.options.per_slice
        water_fat = "water" in volumes and "fat" in volumes
        ff, valid = fat_fraction_map(volumes["water"].array, volumes["fat"].array) if water_fat else (None, None)
        values = measured_labels(self.scorer.spec.labels)
        pred, true = (slice_measurements(self.item.name, v.array, reference.affine, values, axis, ff, valid)
                      for v in (predicted, reference))
        return [{**{k: p[k] for k in ("case", "label", "slice_index", "position_mm")},
                 "pred_area_cm2": p["area_cm2"], "true_area_cm2": t["area_cm2"], "pred_mean_ff": p["mean_ff"],
                 "true_mean_ff": t["mean_ff"]} for p, t in zip(pred, true)]

    def save(self, prediction: Prediction, reference: Volume) -> None:
        """The case's files as ``predict`` writes them into ``predictions/`` (:meth:`DixonEvaluation.predictions`;
        cleaned already) and ``overlays/CASE.png``, as asked."""
        options, case, meta = self.scorer.options, self.item.name, self.job.model.meta
        paths = options.predictions(case, self.out, self.job)
        if paths:
            (self.out / "predictions").mkdir(exist_ok=True)
            DixonSink(case, self.opened, paths, self.job, []).update(prediction)
        if options.overlays:
            (self.out / "overlays").mkdir(exist_ok=True)
            colors = dict(zip(meta.class_names, meta.class_colors or []))
            save_overlay_png(self.out / "overlays" / f"{case}.png", self.opened.case.reference, reference,
                             Volume(prediction.classes, reference.affine), self.scorer.spec.labels, colors,
                             options.overlay_slices, overwrite=True)

    def close(self) -> None:
        return None

