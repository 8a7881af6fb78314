"""Training targets from instance labels: the U-Net paper's loss weight map and the "border" channel.

Ronneberger et al. (2015), eq. 2: ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))`` with d1, d2 the
distances to the nearest and second-nearest object. As in the paper's use (and common implementations), the
separation term applies to background pixels: the narrow gaps between objects weigh most.

Every function here is n-dimensional: on 3D volumes ``(D, H, W)`` (a 3D network's patches) pixels are voxels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from segsuite.core.errors import ConfigError, DataError
from segsuite.core.instances.extract import thing_indices


def _two_nearest(instances: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the distances ``(H, W)`` to the nearest and second-nearest instance (inf where none lies within
    ``reach``). Each instance's distance transform is computed only in its box grown by ``reach``."""
    d1 = np.full(instances.shape, np.inf)
    d2 = np.full(instances.shape, np.inf)
    r = int(np.ceil(reach))
    for index, box in enumerate(ndimage.find_objects(instances), start=1):
        if box is None:
            continue
        grown = tuple(slice(max(s.start - r, 0), min(s.stop + r, n)) for s, n in zip(box, instances.shape))
        dist = ndimage.distance_transform_edt(instances[grown] != index)
        a, b = d1[grown], d2[grown]
        d2[grown] = np.where(dist < a, a, np.minimum(b, dist))
        d1[grown] = np.minimum(a, dist)
    return d1, d2


def unet_weight_map(instances: np.ndarray, w0: float = 10.0, sigma: float = 5.0,
                    class_weight: np.ndarray | None = None) -> np.ndarray:
    """The U-Net weight map ``(H, W)`` float32 of an instance map (0 = background, ids > 0 objects).

    ``class_weight`` is the per-pixel ``w_c`` (default 1 everywhere). The separation term is added on background
    pixels; it needs two objects, so an image with fewer than two is just ``w_c``. Distances are Euclidean in pixels
    from a pixel to the nearest pixel of the object; terms below ``w0 * exp(-8)`` (d1 + d2 > 4 sigma) are dropped.
    """
    weight = np.ones(instances.shape, np.float32) if class_weight is None else class_weight.astype(np.float32)
    present, compact = np.unique(instances, return_inverse=True)  # ids 0..n: find_objects lists every id up to max
    if w0 == 0 or (present > 0).sum() < 2:
        return weight
    compact = compact.reshape(instances.shape) + int(present[0] != 0)
    d1, d2 = _two_nearest(compact, reach=4.0 * sigma)
    term = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))  # exp(-inf) = 0 where fewer than two are in reach
    return weight + np.where(instances == 0, term, 0.0).astype(np.float32)


def balanced_class_weight(mask: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """``w_c`` per pixel ``(H, W)``: each class present weighs inversely to its pixel share (mean 1 over the labelled
    pixels); ignored pixels weigh 0."""
    labelled = mask != ignore_index
    counts = np.bincount(mask[labelled].ravel(), minlength=num_classes).astype(np.float64)
    present = counts > 0
    per_class = np.zeros(num_classes)
    per_class[present] = labelled.sum() / (present.sum() * counts[present])
    out = np.zeros(mask.shape, np.float32)
    out[labelled] = per_class[mask[labelled]]
    return out


def border_target(instances: np.ndarray, width: int = 1) -> np.ndarray:
    """Pixels ``(H, W)`` bool within ``width`` pixels (chessboard) of two different objects: the contact lines and
    narrow gaps between touching or nearly touching objects, both sides included."""
    size = 2 * int(width) + 1
    ids = instances.astype(np.int64)
    big = int(ids.max()) + 1  # stands for "no object" in the minimum filter
    high = ndimage.maximum_filter(ids, size=size, mode="constant", cval=0)
    low = ndimage.minimum_filter(np.where(ids > 0, ids, big), size=size, mode="constant", cval=big)
    return (high > 0) & (low < big) & (high != low)


class InstanceTargets:
    """Data-pipeline transform: adds ``"weight"`` (float32 ``(H, W)``, the U-Net weight map) and, with
    ``border_channel``, ``"border"`` (float32 ``(H, W)``, 1 on borders) to samples carrying ``"instances"``.

    Args:
        things: the thing classes (names); only their instances count.
        w0, sigma: the weight map's separation term (the paper: 10 and 5 px).
        class_balance: ``w_c`` balances class frequencies per sample (the paper); else ``w_c = 1``.
        border_channel: also train an extra output channel to predict borders.
        border_width: border half-width in pixels.
        border_loss_weight: weight of the border channel's loss (binary cross-entropy) next to the class loss.
    """

    def __init__(self, things: Sequence[str], w0: float = 10.0, sigma: float = 5.0, class_balance: bool = False,
                 border_channel: bool = True, border_width: int = 1, border_loss_weight: float = 1.0) -> None:
        if w0 < 0 or sigma <= 0 or border_width < 1 or border_loss_weight < 0:
            raise ConfigError(f"need w0 >= 0, sigma > 0, border_width >= 1, border_loss_weight >= 0; got {w0}, "
                              f"{sigma}, {border_width}, {border_loss_weight}")
        self.things = list(things)
        self.w0, self.sigma, self.class_balance = float(w0), float(sigma), bool(class_balance)
        self.border_channel, self.border_width = bool(border_channel), int(border_width)
        self.border_loss_weight = float(border_loss_weight)
        self.thing_ids: list[int] | None = None
        self.num_classes, self.ignore_index = 0, 255

    def bind(self, meta: Mapping[str, Any]) -> None:
        """Resolve the thing classes against the data's ``meta``; the data must carry instance labels."""
        self.thing_ids = thing_indices(self.things, meta["class_names"])
        if not self.thing_ids:
            raise ConfigError("border weighting needs thing classes, e.g. domain.things=[building]")
        if not meta.get("has_instances", False):
            raise DataError(f"border weighting (instances=border) needs instance labels, but the "
                            f"{meta.get('domain', 'training')} data has none: see the README for where each domain "
                            f"reads them (land cover: ROOT/instances/<stem>.tif; Cityscapes: *_gtFine_instanceIds.png)")
        self.num_classes, self.ignore_index = int(meta["num_classes"]), int(meta["ignore_index"])

    def describe(self) -> dict[str, Any]:
        """What a checkpoint keeps (plain values)."""
        return {"things": list(self.things), "w0": self.w0, "sigma": self.sigma, "class_balance": self.class_balance,
                "border_channel": self.border_channel, "border_width": self.border_width,
                "border_loss_weight": self.border_loss_weight}

    def __call__(self, sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.thing_ids is None:
            raise RuntimeError("InstanceTargets.bind(meta) must be called before use")
        if "instances" not in sample:
            raise DataError("a sample has no 'instances' although the data reported has_instances=True")
        mask = sample["mask"].numpy()
        instances = np.where(np.isin(mask, self.thing_ids), sample["instances"].numpy(), 0)
        class_weight = balanced_class_weight(mask, self.num_classes, self.ignore_index) if self.class_balance else None
        out = dict(sample)
        out["weight"] = torch.from_numpy(unet_weight_map(instances, self.w0, self.sigma, class_weight))
        if self.border_channel:
            out["border"] = torch.from_numpy(border_target(instances, self.border_width).astype(np.float32))
        return out
