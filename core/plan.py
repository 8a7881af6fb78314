"""A training plan from the training data, after nnU-Net's dataset fingerprint -> experiment plan, for every domain.

A domain's dataset builder measures its training data (a :class:`Fingerprint`: image sizes, resolution, class pixel
counts, channel statistics) and asks this module for the shared decisions; it keeps only its own rules (MRI: the
target spacing). The plan is logged, kept in the data meta (so in every checkpoint) and written to ``RUN/plan.json``.

Rules (2D images; the constants below are the knobs):

* **hold-out** (scenes split spatially, :func:`holdout`): square blocks of a quarter of the median scene's short side
  (a multiple of 32, 32..1024 px), so every scene has about 4 x 4 blocks whatever its size (a 128 px block on a
  443 px scene held out 25 % in 2 x 2 blocks: too coarse to validate on, too much taken from training); one block in
  five (:data:`HOLDOUT_SHARE`, nnU-Net's 5-fold share) is held out, one in ten once the scenes hold more than
  :data:`LARGE_DATA_PIXELS` (validation then has enough pixels), at least one block per scene;
* **patch** (:func:`patch_2d`): as large as the training regions allow (the short side of the median training
  region, rounded down to a multiple of :data:`DIVISOR`), at most :data:`MAX_PATCH` px and never larger than the
  images; at least :data:`DIVISOR` px;
* **batch** (:func:`batch_size`): nnU-Net's 2D reference budget (12 x 512^2 pixels per batch at 8 GB), scaled by
  ``memory_gb``, over the patch's pixels; at most what covers :data:`MAX_DATA_FRACTION` of the training pixels, at
  least ``min_batch``;
* **class weights** (:func:`class_weights`): from the class pixel frequencies, ``sqrt(median / f_c)`` clipped to
  [:data:`MIN_WEIGHT`, :data:`MAX_WEIGHT`] (absent classes 0); rare-class sampling is advised when the rarest present
  class holds under :data:`RARE_SHARE` of the pixels;
* **budget** (:func:`budget`): the run length in optimiser steps. nnU-Net trains 1000 epochs of 250 iterations on a
  GPU whatever the data; on a few CPU cores that is out of reach, so ours follows the data: :data:`PASSES` passes
  over the training pixels (a random window, flipped and rotated, is rarely the same twice), between
  :data:`MIN_STEPS` and :data:`MAX_STEPS`, rounded up to whole validation rounds. The issue's Landsat scene learned
  nothing useful in 12 passes (45 steps, mIoU 0.23) and beat the per-pixel Random Forest at about 200 (0.31).
  Validation runs every ``max_steps / ROUNDS`` steps (:data:`ROUNDS` rounds a run, nnU-Net's 250-step epoch at
  most) and early stopping ends a run after :data:`PATIENCE` rounds without a better validation score.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from segsuite.core.errors import ConfigError, DataError

log = logging.getLogger(__name__)

REFERENCE_GB = 8.0
BATCH_PIXELS_2D = 12 * 512**2  # nnU-Net's 2D batch at the 8 GB reference
DIVISOR = 32                   # the 2D networks' stride: patches are multiples of it
MAX_PATCH = 512
MIN_BATCH = 8                  # windows per batch at least: BatchNorm statistics over fewer are noisy
MAX_DATA_FRACTION = 0.05       # a batch covers at most this share of the training pixels (nnU-Net)
HOLDOUT_SHARE = 0.2
LARGE_DATA_PIXELS = 16_000_000
MIN_BLOCK, MAX_BLOCK = 32, 1024
MIN_WEIGHT, MAX_WEIGHT = 0.2, 5.0
RARE_SHARE = 0.05
PASSES = 200
MIN_STEPS, MAX_STEPS = 250, 20_000
ROUNDS = 10
MAX_VAL_INTERVAL = 250         # nnU-Net's iterations per epoch
PATIENCE = 4


@dataclass
class Fingerprint:
    """What a domain measured on its training data.

    Args:
        sizes: ``[height, width]`` of every training image or scene (pixels).
        class_names: the label space, in class-id order.
        class_pixels: labelled training pixels per class (same order).
        channel_mean, channel_std: per input channel (after the domain's own conversion, before normalisation).
        resolution: pixel size (metres, millimetres...) or None when the images carry none.
        train_pixels: pixels training windows are drawn from (default: the sum of ``sizes``).
    """

    sizes: list[list[int]]
    class_names: list[str]
    class_pixels: list[int]
    channel_mean: list[float] = field(default_factory=list)
    channel_std: list[float] = field(default_factory=list)
    resolution: float | None = None
    train_pixels: int | None = None

    def __post_init__(self) -> None:
        if not self.sizes:
            raise DataError("no training images to plan from")
        if len(self.class_pixels) != len(self.class_names):
            raise DataError(f"{len(self.class_pixels)} class pixel counts for {len(self.class_names)} classes")
        if self.train_pixels is None:
            self.train_pixels = int(sum(h * w for h, w in self.sizes))


def _floor(value: float, step: int) -> int:
    return int(value // step) * step


def holdout(sizes: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Block side (px) and share of a spatial hold-out for scenes of ``sizes`` (module docstring)."""
    short = float(np.median([min(h, w) for h, w in sizes]))
    block = min(max(int(round(short / 4 / DIVISOR)) * DIVISOR, MIN_BLOCK), MAX_BLOCK)
    pixels = sum(h * w for h, w in sizes)
    share = HOLDOUT_SHARE if pixels <= LARGE_DATA_PIXELS else HOLDOUT_SHARE / 2
    return {"mode": "blocks", "block": block, "fraction": share}


def patch_2d(region_sizes: Sequence[Sequence[int]], image_sizes: Sequence[Sequence[int]] | None = None
             ) -> list[int]:
    """Square patch side for training regions of ``region_sizes`` ``[h, w]`` (module docstring), as ``[p, p]``."""
    short = float(np.median([min(h, w) for h, w in region_sizes]))
    largest = max(min(h, w) for h, w in (image_sizes or region_sizes))
    side = max(min(_floor(short, DIVISOR), MAX_PATCH, max(_floor(largest, DIVISOR), DIVISOR)), DIVISOR)
    return [side, side]


def batch_size(patch: Sequence[int], train_pixels: float, memory_gb: float = REFERENCE_GB,
               min_batch: int = MIN_BATCH, reference_pixels: float = BATCH_PIXELS_2D) -> int:
    """Windows per batch: the memory budget (``reference_pixels`` per batch at :data:`REFERENCE_GB`, scaled by
    ``memory_gb``) over the patch's pixels (voxels), capped to :data:`MAX_DATA_FRACTION` of the training pixels,
    at least ``min_batch``."""
    if not memory_gb > 0:
        raise ConfigError(f"memory_gb={memory_gb!r}: expected a number of gigabytes > 0")
    pixels = math.prod(patch)
    budget = int(reference_pixels * memory_gb / REFERENCE_GB // pixels)
    cap = round(train_pixels * MAX_DATA_FRACTION / pixels)
    return max(min(budget, cap), int(min_batch))


def class_weights(class_pixels: Sequence[int]) -> list[float]:
    """Loss weights ``sqrt(median frequency / frequency)`` clipped to [MIN_WEIGHT, MAX_WEIGHT]; 0 for absent classes."""
    counts = np.asarray(class_pixels, dtype=np.float64)
    present = counts > 0
    if not present.any():
        raise DataError("the training data has no labelled pixels")
    freq = counts / counts.sum()
    median = float(np.median(freq[present]))
    weights = np.where(present, np.sqrt(median / np.maximum(freq, 1e-12)), 0.0)
    return [round(float(w), 4) for w in np.where(present, np.clip(weights, MIN_WEIGHT, MAX_WEIGHT), 0.0)]


def budget(train_pixels: float, patch: Sequence[int], batch: int) -> dict[str, Any]:
    """Run length in optimiser steps, validation interval and early-stopping patience (module docstring)."""
    per_step = math.prod(patch) * batch
    steps = min(max(math.ceil(PASSES * train_pixels / per_step), MIN_STEPS), MAX_STEPS)
    interval = min(max(steps // ROUNDS, 1), MAX_VAL_INTERVAL)
    steps = math.ceil(steps / interval) * interval
    return {"max_steps": int(steps), "val_check_interval": int(interval), "patience": PATIENCE,
            "passes": round(steps * per_step / max(train_pixels, 1), 1)}


def make_plan(fingerprint: Fingerprint, patch: Sequence[int], memory_gb: float = REFERENCE_GB,
              batch: int | None = None, **extra: Any) -> dict[str, Any]:
    """The plan for ``fingerprint`` training on ``patch`` windows: batch size (``batch`` if given), class
    frequencies and weights, sampling advice and the step budget; ``extra`` entries (a domain's own decisions, e.g.
    the hold-out) are kept as they are. Plain JSON-able values."""
    fp = fingerprint
    patch = [int(p) for p in patch]
    batch = int(batch) if batch is not None else batch_size(patch, int(fp.train_pixels), memory_gb)
    total = max(sum(fp.class_pixels), 1)
    freq = [c / total for c in fp.class_pixels]
    present = [f for f in freq if f > 0]
    return {
        "fingerprint": asdict(fp),
        **extra,
        "patch_size": patch,
        "batch_size": batch,
        "memory_gb": float(memory_gb),
        "normalization": {"mean": list(fp.channel_mean), "std": list(fp.channel_std)},
        "class_frequencies": {n: round(f, 6) for n, f in zip(fp.class_names, freq, strict=True)},
        "class_weights": class_weights(fp.class_pixels),
        "rare_class_sampling": bool(present and min(present) < RARE_SHARE),
        "budget": budget(int(fp.train_pixels), patch, batch),
    }


def summary(plan: Mapping[str, Any]) -> str:
    """A few lines for the log."""
    fp, b = plan["fingerprint"], plan["budget"]
    sizes = np.array(fp["sizes"])
    res = f" at {fp['resolution']:g} per pixel" if fp.get("resolution") else ""
    classes = ", ".join(f"{n} {100 * f:.1f}%" for n, f in plan["class_frequencies"].items())
    hold = plan.get("holdout")
    held = f"; hold-out {hold['fraction']:.0%} in {hold['block']} px blocks" if hold else ""
    return (f"plan from {len(sizes)} training images (median {int(np.median(sizes[:, 0]))} x "
            f"{int(np.median(sizes[:, 1]))} px{res}; {fp['train_pixels']} training pixels){held}\n"
            f"  patch {plan['patch_size'][0]} x {plan['patch_size'][1]}, batch {plan['batch_size']} "
            f"({plan['memory_gb']:g} GB budget); budget {b['max_steps']} steps (~{b['passes']:g} passes), "
            f"validation every {b['val_check_interval']} steps, early stopping after {b['patience']} rounds\n"
            f"  classes: {classes}")
