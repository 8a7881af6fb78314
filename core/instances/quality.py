"""Panoptic quality accumulated as a torchmetrics ``Metric`` (DDP-reduced), over the counts of
:mod:`segsuite.core.instances.metrics`; its own module so that importing the counting functions (streaming
prediction does) does not import torchmetrics."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric

from segsuite.core.errors import ConfigError, DataError
from segsuite.core.instances.metrics import _numpy, panoptic_counts


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else math.nan


def _mean(values: np.ndarray, mask: np.ndarray) -> float:
    return float(values[mask].mean()) if mask.any() else math.nan


class PanopticMetrics(Metric):
    """Panoptic quality per class and overall, plus instance precision/recall/F1 over the thing classes.

    ``update(pred_semantic, pred_instances, target_semantic, target_instances)`` takes ONE image ``(H, W)`` or volume
    ``(D, H, W)`` (numpy or torch, all the same shape; instance maps 0 = no instance). Prediction pixels of a thing
    class without an instance are ignored. ``compute()`` returns a dict of plain floats and a ``per_class`` list.
    """

    full_state_update = False

    def __init__(self, num_classes: int, things: Sequence[int], class_names: Sequence[str] | None = None,
                 ignore_index: int = 255, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        bad = [t for t in things if not (isinstance(t, int | np.integer) and 0 <= t < num_classes)]
        if bad:
            raise ConfigError(f"thing classes {bad} are not class indices; accepted: 0..{num_classes - 1}")
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(f"{len(class_names)} class names given for {num_classes} classes")
        if 0 <= ignore_index < num_classes:
            raise ConfigError(f"ignore_index {ignore_index} is a class index; use a value outside 0..{num_classes - 1}")
        self.num_classes = num_classes
        self.is_thing = np.zeros(num_classes, bool)
        self.is_thing[list(things)] = True
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.ignore_index = ignore_index
        self.add_state("iou_sum", default=torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("tp", "fp", "fn"):
            self.add_state(name, default=torch.zeros(num_classes, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred_semantic: np.ndarray | torch.Tensor | None = None,
               pred_instances: np.ndarray | torch.Tensor | None = None,
               target_semantic: np.ndarray | torch.Tensor | None = None,
               target_instances: np.ndarray | torch.Tensor | None = None, *,
               counts: Sequence[np.ndarray] | None = None) -> None:
        """Add one image or volume, or per-class ``counts = (iou_sum, tp, fp, fn)`` computed elsewhere (e.g. by
        ``StripPanoptic`` over the strips of a raster)."""
        if counts is None:
            arrays = [_numpy(a) for a in (pred_semantic, pred_instances, target_semantic, target_instances)]
            if len({a.shape for a in arrays}) != 1:
                raise DataError(f"prediction and target maps must have one shape, got {[a.shape for a in arrays]}")
            counts = panoptic_counts(*arrays, is_thing=self.is_thing, ignore_index=self.ignore_index)
        for state, value in zip((self.iou_sum, self.tp, self.fp, self.fn), counts):
            state += torch.as_tensor(value, device=state.device).to(state.dtype)

    def add_counts(self, counts: Sequence[np.ndarray]) -> None:
        """``update(counts=counts)``."""
        self.update(counts=counts)

    def compute(self) -> dict:
        iou_sum = self.iou_sum.cpu().double().numpy()
        tp, fp, fn = (s.cpu().numpy() for s in (self.tp, self.fp, self.fn))
        seen = tp + fp + fn > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            rq = np.where(seen, tp / (tp + 0.5 * fp + 0.5 * fn), np.nan)
            sq = np.where(tp > 0, iou_sum / tp, np.where(seen, 0.0, np.nan))
        pq = sq * rq
        out: dict = {"pq": _mean(pq, seen), "sq": _mean(sq, seen), "rq": _mean(rq, seen),
                     "pq_things": _mean(pq, seen & self.is_thing), "pq_stuff": _mean(pq, seen & ~self.is_thing)}
        t, p, n = (int(x[self.is_thing].sum()) for x in (tp, fp, fn))
        out.update(precision=_ratio(t, t + p), recall=_ratio(t, t + n), f1=_ratio(2 * t, 2 * t + p + n))
        out["per_class"] = [
            {"class": self.class_names[k], "thing": bool(self.is_thing[k]), "pq": float(pq[k]), "sq": float(sq[k]),
             "rq": float(rq[k]), "tp": int(tp[k]), "fp": int(fp[k]), "fn": int(fn[k]),
             "precision": _ratio(tp[k], tp[k] + fp[k]), "recall": _ratio(tp[k], tp[k] + fn[k]),
             "f1": _ratio(2 * tp[k], 2 * tp[k] + fp[k] + fn[k]), "pred_count": int(tp[k] + fp[k]),
             "true_count": int(tp[k] + fn[k])}
            for k in range(self.num_classes)]
        return out

    def flat(self, prefix: str) -> dict[str, float]:
        """Scalar scores named ``{prefix}/pq``, ``{prefix}/pq_<class>``, ... for loggers and JSON."""
        scores = self.compute()
        out = {f"{prefix}/{k}": v for k, v in scores.items() if k != "per_class"}
        out.update({f"{prefix}/pq_{c['class']}": c["pq"] for c in scores["per_class"]})
        return out
