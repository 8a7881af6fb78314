"""A tiny built-in synthetic 2D data set (shapes on noise) so the core runs and tests need nothing else."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from segsuite.core import folds


def toy_sample(seed: int, size: int, in_channels: int, num_classes: int, ignore_index: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """One deterministic image (C, H, W) float32 and mask (H, W) int64: discs and boxes of classes
    1..K-1 on background 0, each class with its own mean per channel, plus noise; a 2-pixel border is
    labelled ``ignore_index``."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.int64)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(rng.integers(2, 6)):
        cls = int(rng.integers(1, num_classes))
        cy, cx, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(size // 8, size // 3))]
        if rng.random() < 0.5:
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = cls
        else:
            mask[max(cy - r, 0) : cy + r, max(cx - r, 0) : cx + r] = cls
    signature = np.random.default_rng(1234).normal(0, 1, (num_classes, in_channels)).astype(np.float32)
    image = signature[mask].transpose(2, 0, 1) + rng.normal(0, 0.5, (in_channels, size, size))
    mask[:2], mask[-2:], mask[:, :2], mask[:, -2:] = ignore_index, ignore_index, ignore_index, ignore_index
    return image.astype(np.float32), mask


class ToyDataset(Dataset):
    """``length`` deterministic toy samples; sample i depends only on (seed, i) (``indices``: those samples only)."""

    def __init__(self, length: int = 32, size: int = 64, in_channels: int = 3, num_classes: int = 3,
                 ignore_index: int = 255, seed: int = 0, indices: list[int] | None = None) -> None:
        self.indices = list(range(length)) if indices is None else list(indices)
        self.length, self.size, self.seed = len(self.indices), size, seed
        self.in_channels, self.num_classes, self.ignore_index = in_channels, num_classes, ignore_index

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"toy sample {index} out of range (length {self.length})")
        image, mask = toy_sample(self.seed * 100_003 + self.indices[index], self.size, self.in_channels,
                                 self.num_classes, self.ignore_index)
        return {"image": torch.from_numpy(image), "mask": torch.from_numpy(mask)}

    @property
    def meta(self) -> dict[str, Any]:
        return {
            "domain": "toy", "in_channels": self.in_channels, "num_classes": self.num_classes,
            "class_names": ["background"] + [f"class{i}" for i in range(1, self.num_classes)],
            "ignore_index": self.ignore_index, "patch_size": [self.size, self.size], "normalization": None,
        }


def build_datasets(n_train: int = 32, n_val: int = 8, n_test: int = 8, size: int = 64, in_channels: int = 3,
                   num_classes: int = 3, ignore_index: int = 255, seed: int = 0) -> dict[str, ToyDataset]:
    """Train/val/test toy splits with disjoint seeds; with a fold requested (``fold=K``, :mod:`segsuite.core.folds`)
    train and val are that fold of the ``n_train + n_val`` samples ``sample_0000``, ...; test stays."""
    common = dict(size=size, in_channels=in_channels, num_classes=num_classes, ignore_index=ignore_index)
    chosen = folds.assign([f"sample_{i:04d}" for i in range(n_train + n_val)])
    train, val = ([int(n.removeprefix("sample_")) for n in names] for names in chosen) if chosen else (None, None)
    return {"train": ToyDataset(n_train, seed=seed, indices=train, **common),
            "val": ToyDataset(n_val, seed=seed if chosen else seed + 1, indices=val, **common),  # a fold: one pool
            "test": ToyDataset(n_test, seed=seed + 2, **common)}
