"""Windows into cached cases: the sampling shared by slice and 3D datasets, and the 3D patch datasets.

A window is given by its start per axis; the parts outside the array are padding (image 0, mask
``ignore_index``), so a volume smaller than the patch is centred in it. With an augmentation the window is cropped
``margin`` voxels larger on each side and the augmentation crops it back to the patch (see :mod:`.augment`).

* :class:`TrainPatchDataset`: random ``(C, X, Y, Z)`` patches; with probability ``foreground_fraction`` a class
  present in the case is drawn, then one of its voxels (from up to :data:`LOCATIONS_PER_CLASS` remembered per
  class, as nnU-Net does), and the patch is placed so it holds that voxel. Cases are visited in turn.
* :class:`EvalPatchDataset`: every case tiled by patches from its first voxel on; the last tile along an axis is
  padded, so every voxel is scored exactly once and batches collate.

Randomness comes from torch's global generator (seeded by DataLoader per worker).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from .cases import Case

LOCATIONS_PER_CLASS = 10_000


def window_starts(shape: Sequence[int], patch: Sequence[int], voxel: Sequence[int] | None = None) -> list[int]:
    """Start of a ``patch`` window per axis of an array of ``shape``: uniform over the positions inside it (a
    shorter axis is centred), or, given ``voxel``, uniform over the positions whose window holds it."""
    starts = []
    for axis, (n, p) in enumerate(zip(shape, patch)):
        before = max(0, p - n) // 2  # the padding that centres a short axis
        limit = max(n, p) - p
        if voxel is None:
            offset = int(torch.randint(limit + 1, ()))
        else:
            position = int(voxel[axis]) + before
            low, high = max(0, position - p + 1), min(limit, position)
            offset = int(low + torch.randint(high - low + 1, ()))
        starts.append(offset - before)
    return starts


def crop_window(
    image: np.ndarray, mask: np.ndarray, starts: Sequence[int], size: Sequence[int], ignore_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """``image[:, window]`` ``(C, *size)`` and ``mask[window]`` ``size``, padded where the window leaves the array."""
    low = [max(0, s) for s in starts]
    high = [max(lo, min(n, s + p)) for n, s, p, lo in zip(mask.shape, starts, size, low)]
    region = tuple(slice(a, b) for a, b in zip(low, high))
    widths = [(a - s, s + p - b) for s, p, a, b in zip(starts, size, low, high)]
    image = np.pad(image[(slice(None), *region)], [(0, 0), *widths])
    mask = np.pad(mask[region], widths, constant_values=ignore_index)
    return image, mask


def to_sample(image: np.ndarray, mask: np.ndarray) -> dict[str, torch.Tensor]:
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
        "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)),
    }


def foreground(mask: np.ndarray, ignore_index: int) -> np.ndarray:
    return (mask > 0) & (mask != ignore_index)


class CaseDataset(Dataset):
    """Samples from cached canonical cases; ``augment`` (a sample transform cropping back to the patch) and its
    ``margin`` per axis are set for training."""

    def __init__(self, cases: list[Case], meta: dict, ignore_index: int,
                 augment: Callable[[dict], dict] | None = None, margin: Sequence[int] | None = None) -> None:
        self.cases = cases
        self.ignore_index = ignore_index
        self._meta = meta
        self.augment = augment
        self.margin = list(margin) if margin is not None else None

    @property
    def meta(self) -> dict:
        """Plain-Python metadata for the checkpoint (identical for train/val/test of one build)."""
        return self._meta

    @property
    def case_names(self) -> list[str]:
        return [case.name for case in self.cases]

    @property
    def normalization_params(self) -> dict[str, dict[str, dict[str, float]]]:
        """Per-case, per-channel clipping and z-score numbers (recomputed per case at predict time)."""
        return {case.name: case.normalization for case in self.cases}

    def _patch(self, image: np.ndarray, mask: np.ndarray, starts: Sequence[int], patch: Sequence[int]) -> dict:
        """The training sample at ``starts``: cropped (with the augmentation's margin), augmented."""
        margin = self.margin or [0] * len(patch)
        starts = [s - m for s, m in zip(starts, margin)]
        size = [p + 2 * m for p, m in zip(patch, margin)]
        sample = to_sample(*crop_window(image, mask, starts, size, self.ignore_index))
        return self.augment(sample) if self.augment is not None else sample


def class_locations(label: np.ndarray, num_classes: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Voxel coordinates ``(n, 3)`` of each foreground class present (at most :data:`LOCATIONS_PER_CLASS`)."""
    out = []
    for value in range(1, num_classes):
        coords = np.argwhere(label == value)
        if len(coords) > LOCATIONS_PER_CLASS:
            coords = coords[rng.choice(len(coords), LOCATIONS_PER_CLASS, replace=False)]
        if len(coords):
            out.append(coords)
    return out


class TrainPatchDataset(CaseDataset):
    """Random 3D patches ``{"image": (C, X, Y, Z) float32, "mask": (X, Y, Z) int64}`` (module docstring)."""

    def __init__(self, cases: list[Case], meta: dict, ignore_index: int, patch_size: Sequence[int],
                 foreground_fraction: float, samples_per_epoch: int, augment: Callable[[dict], dict] | None = None,
                 margin: Sequence[int] | None = None, seed: int = 0) -> None:
        super().__init__(cases, meta, ignore_index, augment, margin)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.foreground_fraction = foreground_fraction
        self.length = int(samples_per_epoch)
        rng = np.random.default_rng(seed)
        self.locations = [class_locations(case.label, len(meta["class_names"]), rng) for case in cases]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        case_index = index % len(self.cases)
        case, classes = self.cases[case_index], self.locations[case_index]
        voxel = None
        if classes and torch.rand(()).item() < self.foreground_fraction:
            coords = classes[int(torch.randint(len(classes), ()))]
            voxel = coords[int(torch.randint(len(coords), ()))]
        starts = window_starts(case.label.shape, self.patch_size, voxel)
        return self._patch(case.image, case.label, starts, self.patch_size)


class EvalPatchDataset(CaseDataset):
    """Every case tiled by ``patch_size`` patches, the last ones padded (module docstring)."""

    def __init__(self, cases: list[Case], meta: dict, ignore_index: int, patch_size: Sequence[int]) -> None:
        super().__init__(cases, meta, ignore_index)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.tiles = [
            (c, starts)
            for c, case in enumerate(cases)
            for starts in itertools.product(*[range(0, n, p) for n, p in zip(case.label.shape, self.patch_size)])
        ]

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        case_index, starts = self.tiles[index]
        case = self.cases[case_index]
        return to_sample(*crop_window(case.image, case.label, starts, self.patch_size, self.ignore_index))


def extract_slice(image: np.ndarray, axis: int, index: int, context: int) -> np.ndarray:
    """``(C, X, Y, Z)`` -> ``(C * (2 * context + 1), H, W)`` around slice ``index`` of ``axis`` (0..2)."""
    depth = image.shape[axis + 1]
    neighbours = np.clip(np.arange(index - context, index + context + 1), 0, depth - 1)
    stack = np.moveaxis(np.take(image, neighbours, axis=axis + 1), axis + 1, 1)  # (C, 2k+1, H, W)
    return stack.reshape(-1, *stack.shape[2:])


def _pad(image: np.ndarray, mask: np.ndarray, shape: tuple[int, int], ignore_index: int, centre: bool) -> tuple:
    """Pad ``(C, H, W)`` / ``(H, W)`` up to at least ``shape`` (image 0, mask ``ignore_index``)."""
    extra = [max(0, s - n) for s, n in zip(shape, mask.shape)]
    before = [e // 2 if centre else 0 for e in extra]
    widths = [(b, e - b) for b, e in zip(before, extra)]
    image = np.pad(image, [(0, 0), *widths])
    mask = np.pad(mask, widths, constant_values=ignore_index)
    return image, mask


class _SliceDataset(CaseDataset):
    """Slices ``(case, index)`` of cached canonical cases along ``axis``."""

    def __init__(self, cases: list[Case], meta: dict, axis: int, context_slices: int, ignore_index: int,
                 augment=None, margin=None):
        super().__init__(cases, meta, ignore_index, augment, margin)
        self.axis = axis
        self.context = context_slices
        self.slices = [(c, s) for c, case in enumerate(cases) for s in range(case.image.shape[axis + 1])]

    def _slice(self, case_index: int, slice_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``(C', H, W)`` and mask ``(H, W)`` of one slice."""
        case = self.cases[case_index]
        image = extract_slice(case.image, self.axis, slice_index, self.context)
        return image, np.take(case.label, slice_index, axis=self.axis)


class TrainSliceDataset(_SliceDataset):
    """Random ``patch_size`` crops of slices, with foreground over-sampling (see module docstring); ``augment``
    (with its ``margin``) transforms each crop."""

    def __init__(
        self,
        cases: list[Case],
        meta: dict,
        axis: int,
        context_slices: int,
        ignore_index: int,
        patch_size: tuple[int, int],
        foreground_fraction: float,
        samples_per_epoch: int | None = None,
        augment=None,
        margin=None,
    ):
        super().__init__(cases, meta, axis, context_slices, ignore_index, augment, margin)
        self.patch_size = tuple(patch_size)
        self.foreground_fraction = foreground_fraction
        self.length = samples_per_epoch or len(self.slices)
        self.foreground_slices = [(c, s) for c, s in self.slices if self._has_foreground(cases[c].label, s)]

    def _has_foreground(self, label: np.ndarray, index: int) -> bool:
        return bool(foreground(np.take(label, index, axis=self.axis), self.ignore_index).any())

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        focus = bool(self.foreground_slices) and torch.rand(()).item() < self.foreground_fraction
        if focus:
            case_index, slice_index = self.foreground_slices[int(torch.randint(len(self.foreground_slices), ()))]
        else:
            case_index, slice_index = self.slices[index % len(self.slices)]
        image, mask = self._slice(case_index, slice_index)
        pixel = None
        if focus:
            pixels = np.argwhere(foreground(mask, self.ignore_index))
            pixel = pixels[int(torch.randint(len(pixels), ()))]
        return self._patch(image, mask, window_starts(mask.shape, self.patch_size, pixel), self.patch_size)


class EvalSliceDataset(_SliceDataset):
    """Every slice whole, padded bottom/right to one shape (see module docstring)."""

    def __init__(
        self, cases: list[Case], meta: dict, axis: int, context_slices: int, ignore_index: int, size_divisor: int = 32
    ):
        super().__init__(cases, meta, axis, context_slices, ignore_index)
        plane = [max(np.delete(case.image.shape[1:], axis)[i] for case in cases) for i in range(2)]
        self.pad_shape = tuple(int(math.ceil(n / size_divisor) * size_divisor) for n in plane)

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, mask = self._slice(*self.slices[index])
        return to_sample(*_pad(image, mask, self.pad_shape, self.ignore_index, centre=False))

