"""Training and evaluation samples of cached cases: 2D (2.5D) slices or 3D patches, cut with the core's windows
(:mod:`segsuite.core.sampling`: padding is image 0, mask ``ignore_index``, so a volume smaller than the patch is
centred in it). With an augmentation the window is cropped ``margin`` voxels larger on each side and the augmentation
crops it back to the patch (see :mod:`.augment`).

* :class:`TrainWindows`: random patches of slices perpendicular to ``axis`` (``(C', H, W)``) or of volumes
  (``(C, X, Y, Z)``); with probability ``foreground_fraction`` a foreground class present in the case is drawn, then
  one of its voxels (class-balanced, as nnU-Net), and the window is placed on its slice so that it holds that voxel.
* :class:`EvalWindows`: every slice whole, padded bottom/right to one shape (a multiple of ``size_divisor``), or
  every case tiled by patches from its first voxel on (the last tile along an axis padded), so every voxel is scored
  exactly once and batches collate.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from segsuite.core.sampling import ClassLocations, crop_window, to_sample, window_starts

if TYPE_CHECKING:
    from .cases import Case


def extract_slice(image: np.ndarray, axis: int, index: int, context: int) -> np.ndarray:
    """``(C, X, Y, Z)`` -> ``(C * (2 * context + 1), H, W)`` around slice ``index`` of ``axis`` (0..2)."""
    depth = image.shape[axis + 1]
    neighbours = np.clip(np.arange(index - context, index + context + 1), 0, depth - 1)
    stack = np.moveaxis(np.take(image, neighbours, axis=axis + 1), axis + 1, 1)  # (C, 2k+1, H, W)
    return stack.reshape(-1, *stack.shape[2:])


class CaseDataset(Dataset):
    """Samples from cached canonical cases: slices along ``axis`` (``context_slices`` neighbours each side), or
    whole volumes when ``axis`` is None."""

    def __init__(self, cases: list[Case], meta: dict, ignore_index: int, axis: int | None = None,
                 context_slices: int = 0) -> None:
        self.cases, self.meta, self.ignore_index = cases, meta, ignore_index
        self.axis, self.context = axis, context_slices
        self.slices = [] if axis is None else [(c, s) for c, case in enumerate(cases)
                                               for s in range(case.image.shape[axis + 1])]

    @property
    def case_names(self) -> list[str]:
        return [case.name for case in self.cases]

    def view(self, case_index: int, slice_index: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Image ``(C', *S)`` and mask ``S`` of one slice (or of the whole case: ``slice_index`` None)."""
        case = self.cases[case_index]
        if slice_index is None:
            return case.image, case.label
        image = extract_slice(case.image, self.axis, slice_index, self.context)
        return image, np.take(case.label, slice_index, axis=self.axis)


class TrainWindows(CaseDataset):
    """Random ``patch_size`` windows of slices or volumes with foreground over-sampling (module docstring);
    ``augment`` (a sample transform cropping back to the patch) with its ``margin`` per axis transforms each one.
    ``samples_per_epoch``: the epoch's length (None: one window per slice)."""

    def __init__(self, cases: list[Case], meta: dict, ignore_index: int, patch_size: Sequence[int],
                 foreground_fraction: float, samples_per_epoch: int | None = None, axis: int | None = None,
                 context_slices: int = 0, augment: Callable[[dict], dict] | None = None,
                 margin: Sequence[int] | None = None, seed: int = 0) -> None:
        super().__init__(cases, meta, ignore_index, axis, context_slices)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.foreground_fraction = foreground_fraction
        self.length = int(samples_per_epoch or len(self.slices))
        self.augment, self.margin = augment, list(margin or [0] * len(self.patch_size))
        rng = np.random.default_rng(seed)
        self.locations = [ClassLocations(case.label, range(1, len(meta["class_names"])), rng) for case in cases]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        case_index, slice_index = self.slices[index % len(self.slices)] if self.slices else (index % len(self.cases),
                                                                                             None)
        voxel = self.locations[case_index].maybe(self.foreground_fraction)
        if voxel is not None and self.axis is not None:
            slice_index, voxel = int(voxel[self.axis]), np.delete(voxel, self.axis)
        image, mask = self.view(case_index, slice_index)
        starts = [s - m for s, m in zip(window_starts(mask.shape, self.patch_size, voxel), self.margin)]
        size = [p + 2 * m for p, m in zip(self.patch_size, self.margin)]
        sample = to_sample(*crop_window(image, mask, starts, size, self.ignore_index))
        return self.augment(sample) if self.augment is not None else sample


class EvalWindows(CaseDataset):
    """Every slice whole, padded bottom/right to one shape (a multiple of ``size_divisor``), or with ``patch_size``
    every volume tiled by patches (module docstring)."""

    def __init__(self, cases: list[Case], meta: dict, ignore_index: int, axis: int | None = None,
                 context_slices: int = 0, size_divisor: int = 32, patch_size: Sequence[int] | None = None) -> None:
        super().__init__(cases, meta, ignore_index, axis, context_slices)
        if axis is None:
            self.size = tuple(int(p) for p in patch_size)
            grids = [itertools.product(*[range(0, n, p) for n, p in zip(c.label.shape, self.size)]) for c in cases]
            self.tiles = [(c, None, starts) for c, grid in enumerate(grids) for starts in grid]
        else:
            plane = [max(np.delete(case.image.shape[1:], axis)[i] for case in cases) for i in range(2)]
            self.size = tuple(int(math.ceil(n / size_divisor) * size_divisor) for n in plane)
            self.tiles = [(c, s, (0, 0)) for c, s in self.slices]

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        case_index, slice_index, starts = self.tiles[index]
        image, mask = self.view(case_index, slice_index)
        return to_sample(*crop_window(image, mask, starts, self.size, self.ignore_index))
