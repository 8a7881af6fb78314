"""Whole items predicted as an ordered stack of 2D slices (the slices of a volume, or a 3D model's volume taken slice
by slice along its first axis), brought back onto the item's own grid slab by slab while the engine computes the next
batch: each slice's padding is cut, the class probabilities (softmax) are interpolated linearly onto the item's grid
and the argmax is taken there, as nnU-Net does. The interpolation is trilinear with ``align_corners=False`` (voxel
edges aligned, as ``torch.nn.functional.interpolate``) done separably: bilinear within each slice as it arrives,
then linearly between the two slices that each output slice falls between. Only the slices the next output slices
need are held, so the class probabilities on the item's grid never exist all at once unless a sink asks for the
logits (``keep_logits``: then the log-probabilities, a float32 volume of every channel, as :meth:`Opened.restore`
gave them). Without resampling the logits pass through as they are (the argmax is the same).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from segsuite.core.inference.argmax import first_max

TINY = 1e-12  # probabilities are clamped here before their log (a kept logit of 0 probability)
SLAB = 16  # input slices resampled in-plane at a time


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass(frozen=True)
class Stack:
    """How an item predicted as ``slices`` 2D slices maps onto its grid: ``crop`` ``(h, w)``, the part of each
    slice's ``(C, H', W')`` logits that holds the item (padding at the end of both axes is cut); ``shape`` ``(N, H,
    W)``, the item's grid with the stacking axis first (the cropped ``(slices, h, w)`` stack is resampled to it);
    ``finish``, a ``(C, N, H, W)`` tensor in that order -> ``(C, ...)`` on the item's own axes (e.g. the stacking
    axis moved to its place, flips); ``order``, the memory order of the item's class and border arrays: ``"F"``,
    Fortran's, as NIfTI stores voxels (its writer then copies nothing: 25 ms less for a 256 x 256 x 64 label)."""

    slices: int
    crop: tuple[int, int]
    shape: tuple[int, int, int]
    finish: Callable[[torch.Tensor], torch.Tensor] = _same
    order: str = "C"

    @property
    def resampled(self) -> bool:
        return (self.slices, *self.crop) != tuple(self.shape)


def stack_weights(n_in: int, n_out: int) -> list[tuple[int, int, float]]:
    """For each of ``n_out`` output slices: the two input slices it lies between and the weight of the second
    (``interpolate``'s linear rule with ``align_corners=False``: source position ``(j + 0.5) * n_in / n_out - 0.5``,
    clamped at 0, the last slice repeated past the end)."""
    weights = []
    for j in range(n_out):
        src = max(0.0, (j + 0.5) * n_in / n_out - 0.5)
        i0 = min(int(math.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        weights.append((i0, i1, src - i0 if i1 > i0 else 0.0))
    return weights


class SlabRestorer:
    """Restores a :class:`Stack` of slice logits as they come (:meth:`add`, slices in order) into the class volume
    (uint8; int64 beyond 256 classes), the border probability (a ``K + 1``-th channel: its sigmoid) and, with
    ``keep_logits``, the logits on the item's grid (:meth:`result`). ``combine`` maps the engine's channels to the
    ``num_classes`` logits (+ border) first (ensembles)."""

    def __init__(self, stack: Stack, num_classes: int, combine: Callable[[torch.Tensor], torch.Tensor] = _same,
                 keep_logits: bool = True) -> None:
        self.stack, self.k, self.combine, self.keep = stack, num_classes, combine, keep_logits
        self.weights = stack_weights(stack.slices, stack.shape[0])
        self.cache: dict[int, torch.Tensor] = {}  # input slice -> (C, H, W) on the item's in-plane grid
        self.received = self.next = 0  # input slices received; next output slice
        dtype = np.uint8 if num_classes <= 256 else np.int64
        self.classes = np.zeros(stack.shape, dtype)
        self.border: np.ndarray | None = None
        self.logits: torch.Tensor | None = None

    def add(self, logits: torch.Tensor) -> None:
        """The next ``m`` slices' logits ``(C, m, H', W')``; computes every output slice they complete, :data:`SLAB`
        input slices at a time (a whole volume at once too: its probabilities on the item's grid are never all held)."""
        for start in range(0, logits.shape[1], SLAB):
            self._add(logits[:, start : start + SLAB])

    def _add(self, logits: torch.Tensor) -> None:
        h, w = self.stack.crop
        x = self.combine(logits[:, :, :h, :w]).movedim(1, 0).contiguous()  # (m, C, h, w): each channel a plane
        if self.stack.resampled:
            x = torch.cat([x[:, : self.k].softmax(1), x[:, self.k :]], 1) if x.shape[1] > self.k else x.softmax(1)
        if (h, w) != tuple(self.stack.shape[1:]):
            x = F.interpolate(x, size=tuple(self.stack.shape[1:]), mode="bilinear", align_corners=False)
        for s in x.unbind(0):
            self.cache[self.received] = s
            self.received += 1
        self._emit(x.device, x.shape[1])

    def _emit(self, device: torch.device, channels: int) -> None:
        classes = torch.from_numpy(self.classes)
        while self.next < len(self.weights) and self.weights[self.next][1] < self.received:
            i0, i1, t = self.weights[self.next]
            s = self.cache[i0] if t == 0.0 else torch.lerp(self.cache[i0], self.cache[i1], t)
            first_max(s[: self.k], out=classes[self.next])  # the argmax, channel planes compared pairwise
            if channels > self.k:
                if self.border is None:
                    self.border = np.zeros(self.stack.shape, np.float32)
                self.border[self.next] = torch.sigmoid(s[self.k]).cpu().numpy()
            if self.keep:
                if self.logits is None:  # (C, N, H, W), each channel a volume
                    self.logits = torch.empty((channels, *self.stack.shape), device=device)
                out = self.logits[:, self.next]
                if self.stack.resampled:
                    out[: self.k] = s[: self.k].clamp_min(TINY).log_()
                    out[self.k :] = s[self.k :]
                else:
                    out.copy_(s)
            self.next += 1
            if self.next < len(self.weights):
                for i in [i for i in self.cache if i < self.weights[self.next][0]]:
                    del self.cache[i]  # no later output slice needs it

    def result(self) -> tuple[torch.Tensor | None, np.ndarray, np.ndarray | None]:
        """``(logits or None, classes, border or None)`` on the item's own axes, once every slice was added."""
        if self.next < len(self.weights):
            raise RuntimeError(f"{self.received} of {self.stack.slices} slices were added")
        self.cache.clear()
        classes = _finished(self.stack, self.classes)
        border = _finished(self.stack, self.border) if self.border is not None else None
        return (self.stack.finish(self.logits) if self.logits is not None else None), classes, border


def _finished(stack: Stack, array: np.ndarray) -> np.ndarray:
    return np.asarray(stack.finish(torch.from_numpy(array)[None])[0].numpy(), order=stack.order)


def restore_stack(stack: Stack, logits: torch.Tensor, num_classes: int = 0) -> torch.Tensor:
    """Every slice at once: ``(C, slices, H', W')`` logits -> ``(C, ...)`` on the item's own axes (``num_classes``:
    the class channels, default all)."""
    restorer = SlabRestorer(stack, num_classes or logits.shape[0])
    restorer.add(logits)
    return restorer.result()[0]


def stack_chunks(blocks: Iterable[tuple[int, int, torch.Tensor, Any]], heights: Sequence[int],
                 volumes: Sequence[bool]) -> Iterator[torch.Tensor]:
    """The engine's row blocks ``(source, row0, logits, covered)`` -> each source's whole logits as a chunk of
    slices ``(C, m, H', W')`` as soon as it is complete (a 2D source: one slice; a volume ``(C, D, H, W)``: its D
    slices)."""
    parts: dict[int, list[torch.Tensor]] = {}
    for index, row0, logits, _ in blocks:
        parts.setdefault(index, []).append(logits)
        if row0 + logits.shape[1] < heights[index]:
            continue
        pieces = parts.pop(index)
        whole = torch.cat(pieces, 1) if len(pieces) > 1 else pieces[0]
        yield whole if volumes[index] else whole[:, None]
