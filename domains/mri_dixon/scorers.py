"""Per-volume evaluation of a Dixon checkpoint on the labelled cases of a split, through the predict path.

The cases are those of the dataset builder's ``val`` split (or ``test``: ``imagesTs/`` + ``labelsTs/``); each is
read and predicted as by ``scripts/predict.py`` and compared with its label file on the case's own grid. Reports in
``output_dir``:

* ``per_case.csv``: per case and label, Dice, IoU, HD95 and ASSD (mm), reference and predicted volume (mL), relative
  volume error and mean fat fraction inside the reference and predicted masks (conventions in :mod:`.metrics`);
* ``summary.csv``: per label, mean and sample SD over cases of each metric (also printed as a table);
* ``metrics.json``, ``per_class.csv``, ``confusion.png``: the core's semantic scores pooled over the cases, plus the
  per-case rows, the summary, ``mean_dice`` (mean over labels of the per-case Dice means) and
  ``baseline_mean_dice`` (the same for an all-background prediction);
* ``overlays/CASE.png`` (``overlays``) and ``predictions/CASE.nii.gz`` (``save_predictions``);
* with ``task=instance|panoptic``: 3D panoptic quality against the connected components of the reference's thing
  classes (:class:`.instances.InstanceScores`): ``panoptic.json``, ``panoptic_per_class.csv``,
  ``instances_per_case.csv`` and ``predictions/CASE_instances.nii.gz``.

Voxels labelled ``ignore`` in dataset.json count for no label.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.contracts import Item, Job, Mode, Prediction
from core.errors import ConfigError, DataError
from core.evaluate import SEMANTIC_REPORTS, SemanticScores
from core.instances import write_panoptic_reports
from core.io import write_csv

from .dataset import DatasetSpec, check_label_values, inference_channels, read_dataset_json
from .instances import InstanceScores
from .io import Volume, check_same_grid, read_volume, write_label, write_nifti
from .metrics import evaluate_case, format_summary, save_overlay_png, summarize
from .reader import OpenedCase
from .writer import checked_cleanup, cleaned

log = logging.getLogger(__name__)

PANOPTIC_REPORTS = ["panoptic.json", "panoptic_per_class.csv", "instances_per_case.csv"]


@dataclass
class DixonEvaluation:
    """The cases of ``split`` (``val`` or ``test``) as items: channel files as source, label file as target."""

    split: str = "val"
    largest_component: bool | str | Sequence[str] = False
    overlays: bool = True
    overlay_slices: int = 4
    save_predictions: bool = True
    cases: list[str] = field(default_factory=list)

    def items(self, datasets: Mapping[str, Any], job: Job) -> tuple[str, list[Item]]:
        if self.split not in ("val", "test"):
            raise ConfigError(f"domain.evaluation.split={self.split!r}: choose val or test")
        if self.split not in datasets:
            raise DataError(f"the data has no {self.split!r} split (split test needs imagesTs/ and labelsTs/ in the "
                            "data set root)")
        data, meta = datasets[self.split], job.model.meta
        if dict(data.meta["labels"]) != dict(meta["labels"]):
            raise ConfigError(f"the data's labels {data.meta['labels']} differ from the checkpoint's {meta['labels']}")
        self.cases = list(data.case_names)
        _warn_trained_cases(meta, self.split, self.cases)
        channels, ending = list(data.meta["dataset_channels"]), data.meta["file_ending"]
        water_fat = ["water", "fat"] if {"water", "fat"} <= set(channels) else []
        names = list(dict.fromkeys(inference_channels(meta) + water_fat))
        items = []
        for case in data.cases:
            images = Path(case.reference.path).parent  # ROOT/imagesTr or ROOT/imagesTs
            labels = images.parent / images.name.replace("images", "labels", 1)
            files = {n: images / f"{case.name}_{channels.index(n):04d}{ending}" if n in channels else None
                     for n in names}
            missing = next((n for n, path in files.items() if path is None), None)
            if missing:
                raise DataError(f"case {case.name!r}: the data has no channel {missing!r}; it has {channels}")
            items.append(Item(case.name, files, target=labels / f"{case.name}{ending}"))
        return self.split, items

    def scorers(self, job: Job) -> list[DixonScorer]:
        return [DixonScorer(self, checked_cleanup(self.largest_component, job), SemanticScores(job),
                            InstanceScores(job.instancer, job.model.meta.ignore_index) if job.instancer else None)]

    def report_files(self, job: Job) -> list[str]:
        names = ["per_case.csv", "summary.csv", *SEMANTIC_REPORTS]
        names += PANOPTIC_REPORTS if job.mode is not Mode.SEMANTIC else []
        names += [f"overlays/{c}.png" for c in self.cases] if self.overlays else []
        suffixes = [""] + (["_instances"] if job.mode is not Mode.SEMANTIC else [])
        return names + [f"predictions/{c}{s}.nii.gz" for c in self.cases for s in suffixes if self.save_predictions]


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


@dataclass
class DixonScorer:
    """Every score of the evaluation: per-case rows, the pooled confusion matrix, panoptic quality."""

    options: DixonEvaluation
    clean: list[int]
    semantic: SemanticScores
    panoptic: InstanceScores | None
    rows: list[dict] = field(default_factory=list)
    spec: DatasetSpec | None = None

    def sink(self, item: Item, opened: OpenedCase, out: Path, job: Job) -> CaseSink:
        self.spec = self.spec or read_dataset_json(Path(item.target).parent.parent)
        return CaseSink(self, item, opened, out, job)

    def report(self, out: Path, job: Job) -> dict[str, Any]:
        summary, split, cases = summarize(self.rows), self.options.split, self.options.cases
        write_csv(out / "per_case.csv", self.rows)
        write_csv(out / "summary.csv", summary)
        mean_dice = float(np.nanmean([entry["dice_mean"] for entry in summary]))
        extra = {"split": split, "checkpoint": job.model.checkpoint, "cases": cases, "mean_dice": mean_dice,
                 "baseline_mean_dice": baseline_dice(self.rows), "labels": summary, "per_case": self.rows}
        lines = [f"\n{split} split, {len(cases)} case(s) (mean ± sd over cases):\n{format_summary(summary)}\n"
                 f"mean Dice over labels {mean_dice:.4f} (all-background baseline {extra['baseline_mean_dice']:.4f})"]
        if self.panoptic is not None:
            self.panoptic.write_counts(out / "instances_per_case.csv")
            scores = write_panoptic_reports(self.panoptic.compute(), out, extra={"split": split, "cases": cases})
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
class CaseSink:
    """Scores one case against its label file."""

    scorer: DixonScorer
    item: Item
    opened: OpenedCase
    out: Path
    job: Job

    def update(self, prediction: Prediction) -> None:
        scorer, spec, case, options = self.scorer, self.scorer.spec, self.item.name, self.scorer.options
        classes, instances = cleaned(prediction, scorer.clean, self.job)
        image = self.opened.case.reference
        label = read_volume(self.item.target, case)
        check_same_grid({"image": image, "label": label}, case)
        values = check_label_values(label, spec, case)
        reference = Volume(values, label.affine, label.path, label.header)
        predicted = Volume(classes, reference.affine)
        ignored = values == spec.ignore_label if spec.ignore_label is not None else None
        scored = predicted if ignored is None else Volume(np.where(ignored, spec.ignore_label, classes), label.affine)
        volumes = self.opened.volumes
        scorer.rows += evaluate_case(case, reference, scored, spec.labels, volumes.get("water"), volumes.get("fat"))
        target = values.astype(np.int64)
        if ignored is not None:
            target[ignored] = self.job.model.meta.ignore_index
        scorer.semantic.add(classes, target)
        predictions = self.out / "predictions"
        if options.save_predictions:
            predictions.mkdir(exist_ok=True)
            write_label(predictions / f"{case}.nii.gz", classes, reference)
        if scorer.panoptic is not None:
            scorer.panoptic.update(case, classes, instances, target)
            if options.save_predictions:
                write_nifti(predictions / f"{case}_instances.nii.gz", instances.ids, reference)
        if options.overlays:
            (self.out / "overlays").mkdir(exist_ok=True)
            meta = self.job.model.meta
            colors = dict(zip(meta.class_names, meta.class_colors or []))
            save_overlay_png(self.out / "overlays" / f"{case}.png", image, reference, predicted, spec.labels, colors,
                             options.overlay_slices, overwrite=True)

    def close(self) -> None:
        return None

    def abort(self) -> None:
        pass
