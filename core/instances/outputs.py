"""Glue shared by the domains' instance/panoptic predict and evaluate: split a prediction into classes and border,
cut the ground truth's instances, and write the panoptic-quality reports."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segsuite.core.inference.argmax import first_max
from segsuite.core.instances.extract import Instancer
from segsuite.core.io import write_csv, write_json

PER_CLASS_COLUMNS = ["class", "thing", "pq", "sq", "rq", "tp", "fp", "fn", "precision", "recall", "f1",
                     "pred_count", "true_count"]


def split_logits(logits: torch.Tensor, num_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Class map (argmax of the first ``num_classes`` channels; uint8 up to 256 classes) and, when there is one more
    channel, the border probability (its sigmoid). ``logits`` is ``(C, *spatial)``; returns numpy ``(*spatial)``."""
    semantic = first_max(logits[:num_classes]).cpu().numpy()
    if logits.shape[0] == num_classes:
        return semantic, None
    return semantic, torch.sigmoid(logits[num_classes]).float().cpu().numpy()


def true_instances(instancer: Instancer, mask: np.ndarray, instances: np.ndarray | None = None) -> np.ndarray:
    """Ground-truth instance ids ``(*spatial)``: the data's instance labels on thing-class pixels when it has them,
    else the connected components of each thing class in ``mask`` (no size filter, no borders)."""
    things = np.isin(mask, instancer.thing_ids)
    if instances is not None:
        return np.where(things, instances, 0).astype(np.int64)
    return truth_cutter(instancer)(mask).ids.astype(np.int64)


def truth_cutter(instancer: Instancer) -> Instancer:
    """Cuts ground-truth instances from a label map: ``instancer``'s thing classes and connectivity, every component
    kept, no borders."""
    return Instancer(instancer.thing_ids, instancer.class_names, border="off", connectivity=instancer.connectivity)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def write_panoptic_reports(scores: dict[str, Any], output_dir: str | Path, overwrite: bool = True,
                           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``panoptic.json`` (summary, per class, ``extra``) and ``panoptic_per_class.csv`` from
    ``PanopticMetrics.compute()``; returns what went into the JSON."""
    out = Path(output_dir)
    summary = {k: v for k, v in scores.items() if k != "per_class"}
    result = {**summary, **(extra or {}), "per_class": scores["per_class"]}
    write_json(out / "panoptic.json", _nan_to_none(result), overwrite)  # undefined scores: null, valid JSON
    write_csv(out / "panoptic_per_class.csv", [{k: row[k] for k in PER_CLASS_COLUMNS} for row in scores["per_class"]],
              overwrite, columns=PER_CLASS_COLUMNS)
    return result
