"""Losses. Dice, Focal, Lovasz and Tversky come straight from smp (configs target them directly);
this module adds what smp lacks: cross-entropy with class weights from config, and weighted sums.

Every loss takes logits (B, K, H, W) and targets (B, H, W) and ignores pixels whose target is
``ignore_index``: they change neither the value nor the gradient. Losses with ``takes_weight_map = True`` also
accept a per-pixel weight map (B, H, W) (the U-Net border weighting, see ``segsuite.core.instances.targets``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` that accepts class weights as a plain list (as Hydra passes them) and an optional
    per-pixel ``weight_map`` (B, H, W): the loss is then ``sum(w * ce) / labelled pixels``."""

    takes_weight_map = True

    def __init__(
        self,
        ignore_index: int = 255,
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        weight = None if class_weights is None else torch.as_tensor(list(class_weights), dtype=torch.float32)
        super().__init__(weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                weight_map: torch.Tensor | None = None) -> torch.Tensor:
        if weight_map is None:
            return super().forward(logits, target)
        per_pixel = nn.functional.cross_entropy(logits, target, weight=self.weight, ignore_index=self.ignore_index,
                                                reduction="none", label_smoothing=self.label_smoothing)  # (B, H, W)
        labelled = (target != self.ignore_index).sum().clamp_min(1)
        return (per_pixel * weight_map).sum() / labelled


class WeightedSum(nn.Module):
    """``sum_i weight_i * loss_i`` over named losses, e.g. Dice + CE.

    Args:
        losses: name -> loss module.
        weights: name -> weight; a name missing here weighs 1.
    """

    def __init__(self, losses: Mapping[str, nn.Module], weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.losses = nn.ModuleDict(dict(losses))
        weights = dict(weights or {})
        unknown = set(weights) - set(self.losses)
        if unknown:
            raise ValueError(f"weights given for unknown losses {sorted(unknown)}; losses are {list(self.losses)}")
        self.weights = {name: float(weights.get(name, 1.0)) for name in self.losses}

    @property
    def takes_weight_map(self) -> bool:
        return any(getattr(loss, "takes_weight_map", False) for loss in self.losses.values())

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                weight_map: torch.Tensor | None = None) -> torch.Tensor:
        """A weight map goes to the losses that take one (e.g. the CE of Dice + CE); the others ignore it."""
        total = 0.0
        for name, loss in self.losses.items():
            weighted = weight_map is not None and getattr(loss, "takes_weight_map", False)
            extra = {"weight_map": weight_map} if weighted else {}
            total = total + self.weights[name] * loss(logits, target, **extra)
        return total
