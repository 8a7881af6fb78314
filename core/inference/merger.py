"""The merger of volumes: whole-item weighted accumulation (MONAI ``sliding_window_inference``'s way), for items
that fit in memory and that no writer can take slab by slab (a 3D volume is resampled and reoriented as a whole)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from segsuite.core.inference.windows import Box


class VolumeMerger:
    """Weighted accumulation over a whole N-D item on the predictor's device, handed out once at the end.

    It answers the same :class:`~segsuite.core.inference.engine.Merger` calls as the strip merger: :meth:`release`
    gives nothing until ``upto`` reaches the last row (the engine asks that at an item's end), then every voxel.
    Memory: (K + 1) x the item's voxels floats.
    """

    def __init__(self, shape: Sequence[int], channels: int, device: torch.device) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.acc = torch.zeros(channels, *self.shape, device=device)  # (K, D, H, W)
        self.wsum = torch.zeros(self.shape, device=device)  # (D, H, W)
        self.done = False

    def aggregate(self, values: torch.Tensor, window: Box, weight: torch.Tensor) -> None:
        """Add ``values`` (K, d, h, w) with ``weight`` (d, h, w) at ``window``."""
        region = window.slices()
        self.acc[(slice(None), *region)].addcmul_(values, weight)
        self.wsum[region] += weight

    def release(self, upto: int) -> tuple[int, torch.Tensor, torch.Tensor] | None:
        """The whole item once ``upto`` reaches its end: (0, blended (K, D, H, W), covered (D, H, W)); else None."""
        if self.done or upto < self.shape[0]:
            return None
        self.done = True
        covered = self.wsum > 0
        return 0, self.acc.div_(self.wsum.clamp_min_(1e-12)), covered
