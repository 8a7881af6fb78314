"""What the engine reads from: a :class:`Source` (model-ready float32 windows), a :class:`RawSource` (tiles in the
file's dtype with their valid mask, normalised on the model's device) and :class:`ArraySource` (an array in memory)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from segsuite.core.inference.windows import Box, Window


@runtime_checkable
class Source(Protocol):
    """What the engine reads from: an image of ``shape`` (H, W) read window by window, or a volume of ``shape``
    (D, H, W) read box by box (:class:`~segsuite.core.inference.windows.Box`)."""

    shape: tuple[int, ...]

    def read(self, window: Window | Box) -> np.ndarray:
        """Model-ready input for one window, float32 (C, h, w) (a box: (C, d, h, w))."""

    def skip(self, window: Window | Box) -> bool:
        """True for windows with nothing to predict (all nodata): they are not computed."""


@runtime_checkable
class RawSource(Source, Protocol):
    """A source whose tiles travel in the file's dtype with their valid mask and are normalised on the device.

    ``load`` runs in one of several reader threads at once (a file-backed source keeps one handle per thread);
    ``normalizer(x, valid, out)`` makes a whole batch model-ready on the model's device: ``x`` ``(B, C, h, w)`` in the
    file's dtype, ``valid`` ``(B, h, w)`` (None when every pixel is valid), written into ``out`` (float32, x's shape,
    reused from batch to batch) and returned. Tiles with equal normalizers share batches.
    """

    normalizer: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

    def load(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """``(data (C, h, w) in the file's dtype, valid (h, w) bool)``; an all-False mask skips the window."""


class ArraySource:
    """An in-memory image (C, H, W), or volume (C, D, H, W), as a :class:`Source`."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = np.asarray(image, dtype=np.float32)
        self.shape = self.image.shape[1:]

    def read(self, window: Window | Box) -> np.ndarray:
        if isinstance(window, Box):
            return self.image[(slice(None), *window.slices())]
        r, c, h, w = window
        return self.image[:, r : r + h, c : c + w]

    def skip(self, window: Window) -> bool:
        return False
