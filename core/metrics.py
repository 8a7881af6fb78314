"""Segmentation metrics from one confusion matrix, accumulated with torchmetrics (so DDP reduces it).

All scores ignore pixels whose target is the ignore index. A class absent from both the target and the
prediction has no defined IoU/Dice; it is reported as NaN per class and left out of the means.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics.classification import MulticlassConfusionMatrix


def scores_from_confusion(confmat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-class and mean scores from a confusion matrix.

    Args:
        confmat: (K, K) counts, rows = target class, columns = predicted class.

    Returns:
        ``iou``, ``dice``, ``accuracy`` (per-class recall) as (K,) tensors, and the scalars ``miou``,
        ``mdice``, ``pixel_accuracy``.
    """
    confmat = confmat.double()
    tp = confmat.diag()
    target_count = confmat.sum(1)
    pred_count = confmat.sum(0)
    union = target_count + pred_count - tp
    nan = torch.tensor(float("nan"), dtype=confmat.dtype, device=confmat.device)
    iou = torch.where(union > 0, tp / union.clamp_min(1), nan)
    dice = torch.where(union > 0, 2 * tp / (target_count + pred_count).clamp_min(1), nan)
    acc = torch.where(target_count > 0, tp / target_count.clamp_min(1), nan)
    total = confmat.sum()
    return {
        "iou": iou,
        "dice": dice,
        "accuracy": acc,
        "miou": iou.nanmean(),
        "mdice": dice.nanmean(),
        "pixel_accuracy": tp.sum() / total if total > 0 else nan,
    }


class SegmentationMetrics(MulticlassConfusionMatrix):
    """Confusion matrix over logits or labels, with scores named for logging.

    ``update(preds, target)`` takes logits (B, K, H, W) or labels (B, H, W) and targets (B, H, W);
    ``compute()`` returns the dict of :func:`scores_from_confusion` plus ``confmat``.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255, class_names: Sequence[str] | None = None,
                 **kwargs) -> None:
        super().__init__(num_classes=num_classes, ignore_index=ignore_index, normalize=None, **kwargs)
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        if preds.ndim == target.ndim + 1:
            preds = preds.argmax(1)
        super().update(preds, target)

    def compute(self) -> dict[str, torch.Tensor]:  # type: ignore[override]
        confmat = super().compute()
        return {**scores_from_confusion(confmat), "confmat": confmat}

    def flat(self, prefix: str) -> dict[str, float]:
        """Scalar scores named ``{prefix}/miou``, ``{prefix}/iou_<class>``, ... for loggers and JSON."""
        scores = self.compute()
        out = {f"{prefix}/{k}": float(scores[k]) for k in ("miou", "mdice", "pixel_accuracy")}
        for name, iou, dice in zip(self.class_names, scores["iou"], scores["dice"]):
            out[f"{prefix}/iou_{name}"] = float(iou)
            out[f"{prefix}/dice_{name}"] = float(dice)
        return out
