"""Training windows, written once for every domain: where a window starts (anywhere, or so that it holds a chosen
pixel), cutting it out of an image and its mask with padding, and class-balanced foreground sampling after nnU-Net
(a class present in the item is drawn, then one of its pixels, and the window placed to hold it).

Arrays: images ``(C, *S)``, masks ``S`` with any number of spatial dims (2D slices, 3D volumes). A window is given by
its start per axis and may leave the array; the parts outside are padding (image 0, mask ``ignore_index``), so an
array smaller than the window is centred in it. Randomness comes from torch's global generator, which DataLoader
seeds per worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

LOCATIONS_PER_CLASS = 10_000  # pixels remembered per class (nnU-Net's class_locations)


def window_starts(shape: Sequence[int], patch: Sequence[int], pixel: Sequence[int] | None = None) -> list[int]:
    """Start of a ``patch`` window per axis of an array of ``shape``: uniform over the positions inside it (a
    shorter axis is centred), or, given ``pixel``, uniform over the positions whose window holds it."""
    starts = []
    for axis, (n, p) in enumerate(zip(shape, patch)):
        before = max(0, p - n) // 2  # the padding that centres a short axis
        limit = max(n, p) - p
        if pixel is None:
            offset = int(torch.randint(limit + 1, ()))
        else:
            position = int(pixel[axis]) + before
            low, high = max(0, position - p + 1), min(limit, position)
            offset = int(low + torch.randint(high - low + 1, ()))
        starts.append(offset - before)
    return starts


def crop_window(image: np.ndarray, mask: np.ndarray, starts: Sequence[int], size: Sequence[int],
                ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """``image[:, window]`` ``(C, *size)`` and ``mask[window]`` ``size``, padded where the window leaves the array."""
    low = [max(0, s) for s in starts]
    high = [max(lo, min(n, s + p)) for n, s, p, lo in zip(mask.shape, starts, size, low)]
    region = tuple(slice(a, b) for a, b in zip(low, high))
    widths = [(a - s, s + p - b) for s, p, a, b in zip(starts, size, low, high)]
    image = np.pad(image[(slice(None), *region)], [(0, 0), *widths])
    mask = np.pad(mask[region], widths, constant_values=ignore_index)
    return image, mask


def to_sample(image: np.ndarray, mask: np.ndarray) -> dict[str, torch.Tensor]:
    """The sample contract's tensors: ``image`` float32, ``mask`` int64, both contiguous."""
    return {"image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64))}


class ClassLocations:
    """Where each of ``classes`` lies in ``label``: up to :data:`LOCATIONS_PER_CLASS` coordinates ``(n, ndim)`` per
    class present (a seeded choice when there are more); :meth:`pick` draws a class, then one of its pixels."""

    def __init__(self, label: np.ndarray, classes: Iterable[int], rng: np.random.Generator) -> None:
        self.coords = []
        for value in classes:
            coords = np.argwhere(label == value)
            if len(coords) > LOCATIONS_PER_CLASS:
                coords = coords[rng.choice(len(coords), LOCATIONS_PER_CLASS, replace=False)]
            if len(coords):
                self.coords.append(coords)

    def __bool__(self) -> bool:
        return bool(self.coords)

    def pick(self) -> np.ndarray:
        """A pixel ``(ndim,)`` of a class drawn uniformly among those present (class-balanced, as nnU-Net)."""
        coords = self.coords[int(torch.randint(len(self.coords), ()))]
        return coords[int(torch.randint(len(coords), ()))]

    def maybe(self, fraction: float) -> np.ndarray | None:
        """With probability ``fraction`` (and a class present) :meth:`pick`, else None (a uniform window)."""
        return self.pick() if self.coords and torch.rand(()).item() < fraction else None
