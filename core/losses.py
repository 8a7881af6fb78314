"""Losses. Dice, Focal, Lovasz and Tversky come straight from smp (configs target them directly);
this module adds what smp lacks: cross-entropy with class weights from config, and weighted sums.

Every loss takes logits (B, K, H, W) and targets (B, H, W) and ignores pixels whose target is
``ignore_index``: they change neither the value nor the gradient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` that accepts class weights as a plain list (as Hydra passes them)."""

    def __init__(
        self,
        ignore_index: int = 255,
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        weight = None if class_weights is None else torch.as_tensor(list(class_weights), dtype=torch.float32)
        super().__init__(weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing)


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

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(self.weights[name] * loss(logits, target) for name, loss in self.losses.items())
