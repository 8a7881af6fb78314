"""Per-volume evaluation of a Dixon checkpoint on the labelled cases of a split, through the predict path.

For every case of the split (``val``: the validation cases of the data module's split settings, recomputed
from ``cfg.domain.datamodule.datasets`` without loading the training cases; ``test``: ``imagesTs/`` +
``labelsTs/``) the channel images and the label are read and grid-checked together, the label values checked
against dataset.json, then the images are predicted exactly as by ``scripts/predict.py``
(:func:`.dataset.read_case_volumes` + :func:`.predict.segment_volumes`) and compared with the label on the
case's own grid.

Written into ``output_dir`` (every file staged and renamed only when all cases succeeded):

* ``per_case.csv``: per case and label, Dice, IoU, HD95 and ASSD (mm), reference and predicted volume (mL),
  relative volume error and mean fat fraction inside the reference and predicted masks (conventions for
  empty masks in :mod:`.metrics`; NaN cells are empty);
* ``summary.csv``: per label, mean and sample SD over cases of each metric (also printed as a table);
* ``metrics.json``, ``per_class.csv``, ``confusion.png``: :func:`core.evaluate.write_reports` (voxel
  confusion matrix pooled over the cases) plus the per-case rows, the summary, ``mean_dice`` (mean over labels
  of the per-case Dice means) and ``baseline_mean_dice`` (the same for an all-background prediction);
* ``overlays/CASE.png``: a few axial slices with reference (solid) and predicted (dashed) contours;
* ``predictions/CASE.nii.gz`` (``save_predictions``): the predicted label volumes.

With ``task=instance`` or ``task=panoptic`` (``mode`` and ``instancer``), instances are cut from each predicted label
volume as by predict, and scored against the connected components of the thing classes of the reference
(:class:`.instances.InstanceScores`, panoptic quality in 3D, one volume at a time, pooled over the cases):

* ``panoptic.json``, ``panoptic_per_class.csv``: :func:`core.instances.write_panoptic_reports` (PQ, SQ, RQ per class
  and overall, instance precision/recall/F1 over the thing classes); ``metrics.json`` gets ``pq``, ``f1`` and the
  ``panoptic`` summary;
* ``instances_per_case.csv``: per case and thing class, the predicted and true instance counts, TP, FP, FN and PQ;
* ``predictions/CASE_instances.nii.gz`` (``save_predictions``): the predicted instance ids.

Voxels labelled ``ignore`` in dataset.json count for no label.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from core.errors import ConfigError, DataError
from core.evaluate import write_reports
from core.inference import TilePredictor
from core.instances import Instancer, write_panoptic_reports
from core.io import atomic_path, check_writable
from core.metrics import SegmentationMetrics
from core.predict import output_channels
from core.task import SegmentationTask

from .dataset import (
    DatasetSpec,
    case_files,
    check_label_values,
    ensure_root,
    inference_channels,
    list_cases,
    read_case_volumes,
    read_dataset_json,
    split_cases,
)
from .instances import INSTANCES_SUFFIX, InstanceScores
from .io import Volume, write_label, write_nifti
from .metrics import evaluate_case, format_summary, json_safe, save_overlay_png, summarize, write_csv
from .predict import checked_settings, segment_case

log = logging.getLogger(__name__)

SPLITS = ("val", "test")


def split_case_names(spec: DatasetSpec, split: str, data: Mapping) -> tuple[list[str], str, str]:
    """Case names of ``split`` and their images/labels folders, from the data module's dataset settings."""
    if split == "val":
        _, val = split_cases(list_cases(spec), float(data.get("val_fraction", 0.2)), data.get("val_cases"),
                             int(data.get("seed", 0)))
        return val, "imagesTr", "labelsTr"
    if split == "test":
        if not (spec.root / "imagesTs").is_dir() or not (spec.root / "labelsTs").is_dir():
            raise DataError(f"split 'test' needs {str(spec.root / 'imagesTs')!r} and {str(spec.root / 'labelsTs')!r}")
        return list_cases(spec, "imagesTs", "labelsTs"), "imagesTs", "labelsTs"
    raise ConfigError(f"unknown split {split!r}; choose one of {SPLITS}")


def _check_cases(meta: dict, split: str, cases: list[str]) -> None:
    """Warn when the evaluated cases are not the checkpoint's own validation cases."""
    recorded = meta.get("cases") or {}
    trained = sorted(set(cases) & set(recorded.get("train", [])))
    if trained:
        log.warning("evaluating on %d case(s) the model was trained on: %s", len(trained), ", ".join(trained))
    elif split == "val" and recorded.get("val") and sorted(recorded["val"]) != sorted(cases):
        log.warning("the validation cases %s differ from the checkpoint's %s", cases, recorded["val"])


def _check_labels(spec: DatasetSpec, meta: dict) -> None:
    if dict(spec.labels) != dict(meta["labels"]):
        raise ConfigError(f"{str(spec.root / 'dataset.json')!r} labels {spec.labels} differ from the checkpoint's "
                          f"{meta['labels']}")


def _water_fat(spec: DatasetSpec) -> list[str]:
    """``["water", "fat"]`` when the data set has both (for mean fat fraction), else ``[]``."""
    names = {n.lower() for n in spec.channel_names}
    return ["water", "fat"] if {"water", "fat"} <= names else []


def baseline_dice(rows: list[dict]) -> float:
    """Mean over labels of the per-case Dice of an all-background prediction (1 for empty references, else 0)."""
    per_label: dict[str, list[float]] = {}
    for row in rows:
        per_label.setdefault(row["label"], []).append(1.0 if row["ref_volume_ml"] == 0 else 0.0)
    return float(np.mean([np.mean(v) for v in per_label.values()]))


def _outputs(out: Path, cases: list[str], overlays: bool, save_predictions: bool,
             mode: str = "semantic") -> dict[str, list[Path]]:
    instances = mode != "semantic"
    return {
        "reports": [out / n for n in ("per_case.csv", "summary.csv", "metrics.json", "per_class.csv", "confusion.png")],
        "overlays": [out / "overlays" / f"{c}.png" for c in cases] if overlays else [],
        "predictions": [out / "predictions" / f"{c}.nii.gz" for c in cases] if save_predictions else [],
        "panoptic": [out / n for n in ("panoptic.json", "panoptic_per_class.csv", "instances_per_case.csv")]
        if instances else [],
        "instances": [out / "predictions" / f"{c}{INSTANCES_SUFFIX}.nii.gz" for c in cases]
        if instances and save_predictions else [],
    }


def evaluate(task: SegmentationTask, predictor: TilePredictor, cfg: DictConfig, output_dir: str,
             overwrite: bool = True, split: str = "val", batch_size: int = 16,
             largest_component: bool | Sequence[str] = False, tile: Sequence[int] | None = None,
             overlap: Sequence[int] = (0, 0), blend: str = "gaussian", overlays: bool = True, overlay_slices: int = 4,
             save_predictions: bool = True, mode: str = "semantic",
             instancer: Instancer | None = None) -> dict[str, Any]:
    """Evaluate every case of ``split`` (see the module docstring); returns the summary written to metrics.json
    (with ``pq``, ``f1`` and ``panoptic`` in instance and panoptic ``mode``)."""
    meta, clean = checked_settings(task, predictor, mode, instancer, largest_component, tile, overlap)
    data = cfg.domain.datamodule.datasets
    root = ensure_root(data.root, data.get("synthetic_if_missing", False), data.get("synthetic_cases", 8),
                       data.get("synthetic_shape", (64, 64, 24)), data.get("seed", 0))
    spec = read_dataset_json(root)
    _check_labels(spec, meta)
    cases, images_dir, labels_dir = split_case_names(spec, split, data)
    _check_cases(meta, split, cases)
    out = Path(output_dir)
    outputs = _outputs(out, cases, overlays, save_predictions, mode)
    for path in (p for paths in outputs.values() for p in paths):
        check_writable(path, overwrite)

    names = list(dict.fromkeys(inference_channels(meta) + _water_fat(spec)))
    hp = task.hparams
    pooled = SegmentationMetrics(hp.num_classes, hp.ignore_index, hp.class_names)
    inference = dict(batch_size=batch_size, tile=tile, overlap=overlap, blend=blend,
                     channels=output_channels(task, instancer))
    colors = dict(zip(meta["class_names"], meta.get("class_colors", [])))
    scores = InstanceScores(instancer, hp.ignore_index) if instancer is not None else None
    rows: list[dict] = []
    with ExitStack() as staged:
        for i, case in enumerate(tqdm(cases, desc=f"evaluate {split}", unit="case")):
            files = case_files(spec, case, names, images_dir)
            label_file = spec.root / labels_dir / f"{case}{spec.file_ending}"
            for name, path in [*files.items(), ("label", label_file)]:
                if not path.exists():
                    raise DataError(f"case {case!r}: {name} file {str(path)!r} is missing")
            volumes = read_case_volumes({**files, "label": label_file}, case)  # one grid, label included
            label_volume = volumes.pop("label")
            values = check_label_values(label_volume, spec, case)
            reference = Volume(values, label_volume.affine, label_volume.path, label_volume.header)
            labels, border, prepared = segment_case(predictor, case, volumes, meta, hp.num_classes, clean,
                                                    **inference)
            prediction = Volume(labels, reference.affine)
            rows += evaluate_case(case, reference, _mask_ignored(prediction, values, spec), spec.labels,
                                  volumes.get("water"), volumes.get("fat"))
            target = _target(values, spec, hp.ignore_index)
            pooled.update(torch.from_numpy(labels[None].astype(np.int64)), torch.from_numpy(target[None]))
            if save_predictions:
                write_label(staged.enter_context(atomic_path(outputs["predictions"][i], overwrite)),
                            prediction.array, reference, True)
            if scores is not None:
                instances = instancer(labels, border)
                scores.update(case, labels, instances, target)
                if save_predictions:
                    write_nifti(staged.enter_context(atomic_path(outputs["instances"][i], overwrite)),
                                instances.ids, reference, True)
            if overlays:
                save_overlay_png(staged.enter_context(atomic_path(outputs["overlays"][i], overwrite)),
                                 prepared.reference, reference, prediction, spec.labels, colors, overlay_slices,
                                 overwrite=True)
        summary = summarize(rows)
        write_csv(rows, staged.enter_context(atomic_path(out / "per_case.csv", overwrite)), overwrite=True)
        write_csv(summary, staged.enter_context(atomic_path(out / "summary.csv", overwrite)), overwrite=True)
        mean_dice = float(np.nanmean([entry["dice_mean"] for entry in summary]))
        extra = {"split": split, "checkpoint": str(cfg.checkpoint), "cases": cases, "mean_dice": mean_dice,
                 "baseline_mean_dice": baseline_dice(rows), "labels": summary, "per_case": rows}
        if scores is not None:
            extra.update(_write_panoptic(scores, staged, out, overwrite, split, cases))
        result = write_reports(pooled, out, overwrite, extra=json_safe(extra))
    print(f"\n{split} split, {len(cases)} case(s) (mean ± sd over cases):\n{format_summary(summary)}\n"
          f"mean Dice over labels {mean_dice:.4f} (all-background baseline {extra['baseline_mean_dice']:.4f})")
    if scores is not None:
        print(_panoptic_line(result["panoptic"]))
    return result


def _write_panoptic(scores: InstanceScores, staged: ExitStack, out: Path, overwrite: bool, split: str,
                    cases: list[str]) -> dict[str, Any]:
    """Write the panoptic reports and the per-case counts (staged); returns the entries for metrics.json."""
    scores.write_counts(staged.enter_context(atomic_path(out / "instances_per_case.csv", overwrite)))
    panoptic = write_panoptic_reports(json_safe(scores.compute()), out, overwrite, extra={"split": split,
                                                                                          "cases": cases})
    summary = {k: v for k, v in panoptic.items() if k not in ("per_class", "split", "cases")}
    log.info("%s", _panoptic_line(summary))
    return {"pq": summary["pq"], "f1": summary["f1"], "panoptic": summary}


def _panoptic_line(summary: dict[str, Any]) -> str:
    def fmt(key: str) -> str:
        return "n/a" if summary.get(key) is None else f"{summary[key]:.4f}"
    return (f"panoptic quality {fmt('pq')} (SQ {fmt('sq')}, RQ {fmt('rq')}; things {fmt('pq_things')}, stuff "
            f"{fmt('pq_stuff')}); instances: precision {fmt('precision')}, recall {fmt('recall')}, F1 {fmt('f1')}")


def _mask_ignored(prediction: Volume, values: np.ndarray, spec: DatasetSpec) -> Volume:
    """The prediction with reference ``ignore`` voxels set to the ignore label, so they count for no label."""
    if spec.ignore_label is None:
        return prediction
    return Volume(np.where(values == spec.ignore_label, spec.ignore_label, prediction.array), prediction.affine)


def _target(values: np.ndarray, spec: DatasetSpec, ignore_index: int) -> np.ndarray:
    """Reference labels as int64 targets, ``ignore`` mapped to the checkpoint's ignore index."""
    target = values.astype(np.int64)
    if spec.ignore_label is not None:
        target[values == spec.ignore_label] = ignore_index
    return target
