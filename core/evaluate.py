"""``evaluate(cfg)``: the Hydra face of :func:`segsuite.core.pipeline.run_evaluate`, and the semantic scorer every
domain uses (confusion matrix -> ``metrics.json``, ``per_class.csv``, ``confusion.png``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra.utils
import numpy as np
import torch
from omegaconf import DictConfig

from segsuite.core.contracts import Job
from segsuite.core.errors import ConfigError
from segsuite.core.io import write_csv, write_json
from segsuite.core.metrics import SegmentationMetrics
from segsuite.core.pipeline import run_evaluate
from segsuite.core.plots import plot_confusion
from segsuite.core.predict import load_job

log = logging.getLogger(__name__)

SEMANTIC_REPORTS = ["metrics.json", "per_class.csv", "confusion.png"]
BASELINES = ("rf",)  # evaluate's baseline=...: the domains whose evaluation has a ``baseline`` field offer them


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score ``cfg.checkpoint`` on the domain's labelled split; reports in ``cfg.output_dir``. ``cfg.baseline``
    (``rf``) also scores a classical baseline on the same pixels, where the domain's evaluation offers one."""
    evaluation = hydra.utils.instantiate(cfg.domain.evaluation)
    baseline = check_baseline(cfg.get("baseline"))
    if baseline is not None:
        if not hasattr(evaluation, "baseline"):
            raise ConfigError(f"baseline={baseline} is available for landcover, not for domain {cfg.domain.name!r}")
        evaluation.baseline = baseline
    job = load_job(cfg)
    reader = hydra.utils.instantiate(cfg.domain.reader)
    datasets = hydra.utils.instantiate(cfg.domain.datamodule.datasets)()
    return run_evaluate(evaluation, reader, job, datasets, cfg.output_dir)


def check_baseline(value: Any) -> str | None:
    """``baseline``: None or one of :data:`BASELINES` (a ConfigError naming the value otherwise)."""
    if value is None or value in BASELINES:
        return value
    raise ConfigError(f"baseline={value!r} is not known; accepted: null (none) or rf (a per-pixel Random Forest, "
                      "land cover)")


class SemanticScores:
    """The confusion matrix of class predictions against targets, over a whole split (``ignore_index`` skipped)."""

    def __init__(self, job: Job) -> None:
        meta = job.model.meta
        self.metrics = SegmentationMetrics(meta.num_classes, meta.ignore_index, list(meta.class_names))

    def add(self, classes: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> None:
        """Count one prediction ``(*spatial)`` against its target ``(*spatial)`` (int, ignore index where unknown)."""
        pred = torch.as_tensor(np.asarray(classes, dtype=np.int64)).reshape(1, -1)
        self.metrics.update(pred, torch.as_tensor(np.asarray(target, dtype=np.int64)).reshape(1, -1))

    def report(self, out: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return write_reports(self.metrics, out, True, extra)


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
    write_csv(out / "per_class.csv", per_class, overwrite)
    plot_confusion(scores["confmat"].numpy(), metrics.class_names, out / "confusion.png", overwrite)
    log.info("mIoU %.4f, pixel accuracy %.4f; reports in %s", summary["miou"], summary["pixel_accuracy"], out)
    return result
